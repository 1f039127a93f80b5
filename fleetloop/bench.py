"""`fleetloop bench path`: records per second through the whole path, on this machine.

Stand-in devices (`mosquitto_pub`, the C client, with real device certificates over TLS,
QoS 1) publish canonical records into a gateway started by the CLI; the figure is the time
until the cloud holds every record — each one counted, so the run also proves exactly-once.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fleetloop.stack import Stack
from protocol import record

# mosquitto_pub numbers QoS 1 messages with 16 bits: more lines than this per publisher stop early.
MAX_PER_DEVICE = 60000


@dataclass(frozen=True)
class PathResult:
    devices: int
    records: int
    publish_s: float
    in_cloud_s: float
    records_per_s: float
    exactly_once: bool


def _lines(device_id: str, count: int) -> bytes:
    return b"".join(
        record.encode(device_id, seq, 1732345678000 + seq, {"cadence": 80, "power": seq % 300})
        + b"\n"
        for seq in range(1, count + 1)
    )


def bench_path(devices: int, per_device: int, home: Path | None = None) -> PathResult:
    if not 0 < per_device <= MAX_PER_DEVICE:
        raise ValueError(f"per_device must be 1..{MAX_PER_DEVICE}")
    publisher = shutil.which("mosquitto_pub")
    if publisher is None:
        raise FileNotFoundError("mosquitto_pub not found: install the mosquitto-clients package")
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-") as tmp:
        stack = Stack(home=home or Path(tmp))
        ids = [f"bench-{i}" for i in range(devices)]
        try:
            stack.start_path(ids)
            keys = stack.home / "keys"
            payloads = {d: _lines(d, per_device) for d in ids}
            start = time.monotonic()
            procs = []
            for d in ids:
                argv = [publisher, "--cafile", str(keys / "ca.crt.pem"),
                        "--cert", str(keys / "devices" / d / "cert.pem"),
                        "--key", str(keys / "devices" / d / "key.pem"),
                        "-h", "localhost", "-p", str(stack.mqtt_port), "-i", d,
                        "-t", f"fleet/{d}/telemetry", "-q", "1", "-l"]
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
                assert proc.stdin is not None
                proc.stdin.write(payloads[d])
                proc.stdin.close()
                procs.append(proc)
            for proc in procs:
                proc.wait()
            published = time.monotonic() - start

            def all_in() -> bool:
                rows = {r["id"]: r for r in stack.cloud_devices()}
                return all(rows.get(d, {}).get("records", 0) >= per_device for d in ids)

            stack.wait_until(all_in, timeout=600, interval=0.1, what="every record in the cloud")
            elapsed = time.monotonic() - start
            exact = all([r["seq"] for r in stack.telemetry(d)] == list(range(1, per_device + 1))
                        for d in ids)
        finally:
            stack.stop()
    total = devices * per_device
    return PathResult(devices, total, round(published, 2), round(elapsed, 2),
                      round(total / elapsed), exact)


def as_dict(result: PathResult) -> dict[str, object]:
    return asdict(result)
