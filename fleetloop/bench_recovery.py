"""`fleetloop bench recovery`: how soon after a cloud outage the gateway's backlog is in the
cloud again (the goal: under 2 s).

A real stack (cloud, gateway, Mosquitto started by the CLI; a stand-in device over mTLS): the
cloud is stopped, the device's records are acked into the gateway's spool, the outage lasts
`outage_s` (60 s by default: the uploads back off to their 30 s ceiling meanwhile), then the
cloud starts again. The figure is the time from the cloud's first healthy answer to the last
record in it. The same run is repeated with the health probe switched off (the gateway only
waits out its backoff, as it did before the probe) for the baseline.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fleetloop.stack import Stack

DEVICE = "bench-r1"
NO_PROBE_S = "3600"  # a probe period longer than any backoff: the behaviour without a probe


@dataclass(frozen=True)
class RecoveryRun:
    probe: bool
    outage_s: float
    records: int
    recovery_s: float  # cloud healthy again -> every record in the cloud
    retries_before: int  # failed uploads during the outage


@dataclass(frozen=True)
class RecoveryResult:
    runs: tuple[RecoveryRun, ...]
    retry_max_s: float
    goal_s: float = 2.0


@contextmanager
def _gateway_env(values: dict[str, str]) -> Iterator[None]:
    """The Stack hands its own environment to the processes it starts: set these for the
    gateway it starts next, and put the old values back."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _publish(stack: Stack, records: int) -> None:
    client = stack.mqtt_client(DEVICE)
    client.connect("localhost", stack.mqtt_port)
    client.loop_start()
    try:
        infos = [client.publish(f"fleet/{DEVICE}/telemetry",
                                stack.signed_record(DEVICE, seq, seq % 300), qos=1)
                 for seq in range(1, records + 1)]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def one_run(probe: bool, outage_s: float, records: int, log: Callable[[str], None]) -> RecoveryRun:
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-recovery-") as tmp:
        stack = Stack(home=Path(tmp))
        try:
            stack.keygen([DEVICE])
            stack.start_cloud()
            stack.register_gateway()
            stack.enrol([(DEVICE, "bike")])
            with _gateway_env({} if probe else {"FLEETLOOP_PROBE_S": NO_PROBE_S}):
                stack.start_gateway()
            assert stack.cloud is not None
            stack.cloud.stop()
            _publish(stack, records)
            stack.wait_until(lambda: (stack.gateway_status() or {}).get("inbox") == 0,
                             what="the records sealed")
            log(f"cloud down for {outage_s:g} s ({'with' if probe else 'without'} the probe)")
            time.sleep(outage_s)
            failures = int((stack.gateway_status() or {}).get("uplink", {}).get("failures", 0))
            stack.start_cloud()  # returns at its first healthy answer
            back = time.monotonic()

            def all_in() -> bool:
                rows = {r["id"]: r for r in stack.cloud_devices()}
                return int(rows.get(DEVICE, {}).get("records", 0)) >= records

            stack.wait_until(all_in, timeout=120, interval=0.05, what="the backlog in the cloud")
            took = time.monotonic() - back
        finally:
            stack.stop()
    return RecoveryRun(probe, outage_s, records, round(took, 2), failures)


def bench_recovery(outage_s: float = 60.0, records: int = 500, baseline: bool = True,
                   log: Callable[[str], None] = lambda line: None) -> RecoveryResult:
    runs = [one_run(True, outage_s, records, log)]
    if baseline:
        runs.append(one_run(False, outage_s, records, log))
    return RecoveryResult(tuple(runs), retry_max_s=30.0)


def as_dict(result: RecoveryResult) -> dict[str, Any]:
    return asdict(result)


def table(result: dict[str, Any]) -> str:
    rows = ["| gateway | outage | records | backlog in the cloud after its return |",
            "|---|---|---|---|"]
    for run in result["runs"]:
        what = "probes /healthz every ~1 s" if run["probe"] else "backoff only (no probe)"
        rows.append(f"| {what} | {run['outage_s']:g} s | {run['records']} | "
                    f"{run['recovery_s']} s |")
    rows.append(f"\nUpload retries back off to {result['retry_max_s']:g} s; goal under "
                f"{result['goal_s']:g} s. Measured {result.get('measured', '')}.")
    return "\n".join(rows)
