"""`fleetloop bench connections`: how many devices one gateway holds, what each costs, and
how a fleet comes back after its broker restarts (docs/benchmarks.md).

N simulated devices (the real device code, each its own certificate) connect over mTLS to one
gateway's Mosquitto. Each owner grants `usage` consent, so each device sends one record (its
consent record) and the gateway knows it: the back-pressure hint is computed from the devices
the gateway knows. Measured: the time until all are connected, the broker's and the gateway's
resident memory per connected device (against the same processes before the devices came),
and a reconnect storm: the broker is killed (the gateway restarts it) and the devices come back
honouring the hint; the time until all are back and the peak connections per second.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetloop.device_consent import request as request_consent
from fleetloop.fleet.board import Board, Counters
from fleetloop.fleet.clock import FleetClock
from fleetloop.fleet.scheduler import Scheduler
from fleetloop.fleet.simulate import Throttled, start_stack
from fleetloop.fleet.stream import Reactor
from fleetloop.stack import Stack
from gateway.procs import raise_open_files


class Idle:
    """A product nobody uses during the benchmark: connections only."""

    product = "bike"

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> None:
        return None

    def rest_ms(self, t_ms: int, settings: Mapping[str, int]) -> int:
        return 86_400_000


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def broker_pid(stack: Stack) -> int:
    path = stack.home / "gateways" / stack.gateway_id / "broker" / "mosquitto.pid"
    return int(path.read_text().strip())


def bench_connections(devices: int, home: Path | None = None, reconnect_rate: int | None = None,
                      timeout_s: float = 900.0) -> dict[str, Any]:
    raise_open_files(2 * devices + 1024)
    if reconnect_rate is not None:
        os.environ["FLEETLOOP_RECONNECT_RATE"] = str(reconnect_rate)
    # The gateway recomputes its hint every 30 s by default: 5 s here, so the storm does not
    # wait for it (the value is the same).
    os.environ.setdefault("FLEETLOOP_HINT_INTERVAL_S", "5")
    with tempfile.TemporaryDirectory(prefix="fleetloop-conn-") as tmp:
        root = Path(home) if home is not None else Path(tmp)
        stack = start_stack(root)
        try:
            return _measure(stack, devices, timeout_s)
        finally:
            stack.stop()


def _measure(stack: Stack, devices: int, timeout_s: float) -> dict[str, Any]:
    from fwtool.batch import Row, provision_many

    assert stack.gateway is not None and stack.gateway.popen is not None
    gateway_pid = stack.gateway.popen.pid
    ids = [f"bike-{n:05d}" for n in range(1, devices + 1)]
    t0 = time.monotonic()
    result = provision_many(stack.home, [Row(d, "bike") for d in ids], "localhost",
                            stack.mqtt_port, firmware=False, cloud=stack.cloud_url,
                            token=stack.admin_token)
    if result.failures:
        raise RuntimeError(f"provisioning failed: {result.failures[:3]}")
    provision_s = time.monotonic() - t0
    for d in ids:
        request_consent(stack.home, d, "usage")
    broker_before = rss_bytes(broker_pid(stack))
    gateway_before = rss_bytes(gateway_pid)
    sim_before = rss_bytes(os.getpid())

    fleet = FleetClock(span_ms=86_400_000, speed=1.0)
    fleet.start()
    reactor, counters = Reactor(), Counters()
    boards = [Board(stack.home / "devices" / d, Idle(), fleet, reactor, counters) for d in ids]
    sched = Scheduler(reactor, boards)
    deadline = time.monotonic() + timeout_s
    t0 = time.monotonic()
    # (Counting over every board is worth doing ten times a second, not at every turn.)
    all_up = Throttled(lambda: all(b.up for b in boards), 0.1)
    sched.run(lambda: all_up() or time.monotonic() > deadline)
    connect_all_s = time.monotonic() - t0
    connected = sum(1 for b in boards if b.up)

    # Steady state: every consent record acked (the gateway knows every device), a few
    # seconds of keepalives, then memory.
    known = Throttled(lambda: all(b.totals()[1] >= 1 for b in boards), 0.1)
    sched.run(lambda: known() or time.monotonic() > deadline)
    settle = time.monotonic() + 15
    hinted = Throttled(lambda: all(b.agent is not None and b.agent.link.hint_ms
                                   for b in boards), 0.1)
    sched.run(lambda: hinted() or time.monotonic() > settle)
    bpid = broker_pid(stack)
    broker_per = (rss_bytes(bpid) - broker_before) / max(1, connected)
    gateway_per = (rss_bytes(gateway_pid) - gateway_before) / max(1, connected)
    sim_per = (rss_bytes(os.getpid()) - sim_before) / max(1, len(boards))
    hints = {b.agent.link.hint_ms for b in boards if b.agent is not None}

    # The storm: the broker dies; the gateway restarts it; the devices come back.
    counters.connect_times.clear()
    t_kill = time.monotonic()
    os.kill(bpid, signal.SIGKILL)
    all_down = Throttled(lambda: not any(b.up for b in boards), 0.1)
    sched.run(lambda: all_down() or time.monotonic() > deadline)
    sched.run(lambda: len(counters.connect_times) >= connected or time.monotonic() > deadline)
    storm_all_back_s = time.monotonic() - t_kill
    back = len(counters.connect_times)
    peak = _peak_per_second(counters.connect_times)
    for b in boards:
        b.shut_down()
    return {
        "devices": devices, "connected": connected, "provision_s": round(provision_s, 1),
        "connect_all_s": round(connect_all_s, 2),
        "broker_bytes_per_device": int(broker_per), "gateway_bytes_per_device": int(gateway_per),
        "simulator_bytes_per_device": int(sim_per),
        "hint_ms": sorted(hints), "storm_back": back,
        "storm_all_back_s": round(storm_all_back_s, 2),
        "storm_peak_connects_per_s": peak, "steps": sched.steps,
        "cores": os.cpu_count(), "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "reconnect_rate": int(os.environ.get("FLEETLOOP_RECONNECT_RATE", "100")),
    }


def _peak_per_second(times: list[float]) -> int:
    """The most connections within any one-second window."""
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] > 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
