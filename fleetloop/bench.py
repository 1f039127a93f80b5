"""`fleetloop bench path`: records per second through the whole path, on this machine.
`fleetloop bench heap`: the smallest MicroPython heap each product profile runs at (below).

Stand-in devices (`mosquitto_pub`, the C client, with real device certificates over TLS,
QoS 1), enrolled with the cloud like real ones, publish canonical version 2 records tagged
with each device's record key into a gateway started by the CLI; the figure is the time
until the cloud holds every record — each one counted, so the run also proves exactly-once.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fleetloop.stack import Stack
from protocol import record, tag

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


def _lines(device_id: str, count: int, key: bytes) -> bytes:
    """`count` version 2 records of one incarnation, tagged with the device's record key, as
    the agent sends them (the cloud quarantines untagged records of an enrolled device)."""
    mac = tag.Hmac(key)
    incarnation = secrets.randbelow(record.MAX_INCARNATION) + 1
    return b"".join(
        record.encode(device_id, incarnation, seq, 1732345678000 + seq,
                      {"cadence": 80, "power": seq % 300}, mac) + b"\n"
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
            stack.enrol([(d, "bike") for d in ids])
            keys = stack.home / "keys"
            payloads = {d: _lines(d, per_device, (keys / "devices" / d / "record.key").read_bytes())
                        for d in ids}
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
    """The result with its baseline from the same run: the rate at which the stand-ins handed
    their records to the broker (what the path would take if nothing downstream cost a thing)."""
    out: dict[str, object] = dict(asdict(result))
    publish_rate = result.records / result.publish_s if result.publish_s > 0 else 0.0
    out["baseline"] = {"what": "publishers' own rate into the broker, same run",
                       "records_per_s": round(publish_rate)}
    out["of_baseline"] = round(result.records_per_s / publish_rate, 2) if publish_rate else None
    return out


def path_table(result: dict[str, Any]) -> str:
    """The docs table of one `bench path` run."""
    base = result["baseline"]["records_per_s"]
    result.setdefault("measured", time.strftime("%Y-%m-%d", time.gmtime()))
    result.setdefault("machine", machine())
    return "\n".join([
        "| run | records | published after | all in the cloud after | records/s | of the publishers' rate | exactly once |",
        "|---|---|---|---|---|---|---|",
        f"| {result['devices']} × {result['records'] // max(1, result['devices']):,} "
        f"| {result['records']:,} | {result['publish_s']} s ({base:,}/s) | {result['in_cloud_s']} s "
        f"| {round(result['records_per_s']):,} | {result['of_baseline']} "
        f"| {'yes' if result['exactly_once'] else 'NO'} |",
        "",
        f"Measured {result['measured']} on {result['machine']['cores']} cores "
        f"({result['machine']['cpu'] or 'unknown cpu'}, Python {result['machine']['python']}).",
    ])


# -- `fleetloop bench heap`: the smallest MicroPython heap each product profile runs at ----------
# "Runs" is the device-heap budget's definition: for `seconds` (60) the whole agent samples
# through a real stack (Mosquitto started by the gateway, the gateway, the cloud), a signed
# config from the cloud is applied, one broker restart is survived (kill -9 of Mosquitto; the
# gateway restarts it and the device reconnects), and afterwards every record is acked and in
# the cloud exactly once, with no reset and no MemoryError. Every device of a round starts with
# a fresh flash and follows one timeline: the config at a third of the run, the broker restart
# at two thirds, then the wait until every device drained.

HEAP_FLOOR_KB = 32  # assumed too small: the agent alone takes ~34 KB at boot
HEAP_TOP_KB = 64
HEAP_REQUIRED_KB = 56  # the device-heap budget: every profile runs at this size
PROFILES = ("bike", "mirror", "engine")


@dataclass(frozen=True)
class HeapTrial:
    """One device run at one heap size, and what it showed."""

    profile: str
    heap_kb: int
    runs: bool
    why: str  # the first reason it does not count as running ("" when it runs)
    records: int  # records the cloud holds for it, 1..N exactly once when it runs
    boot_free: int | None  # heap free at the agent's boot event
    lowest_free: int | None  # lowest free heap the agent reported (before a collection)
    config_applied: bool
    reconnected: bool


@dataclass
class _Device:
    device_id: str
    profile: str
    heap_kb: int
    records: int
    proc: Any = None


def _events(log: str) -> list[dict[str, Any]]:
    out = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                out.append(event)
    return out


def judge(log: str, records: int, cloud_seqs: list[int], alive: bool,
          profile: str = "", heap_kb: int = 0) -> HeapTrial:
    """Decide from a device's log (its JSON event lines and stderr) and the cloud's records
    whether it ran; the first failure found is the reason."""
    events = _events(log)
    kinds = [e["event"] for e in events]
    applied = [i for i, e in enumerate(events)
               if e["event"] == "config" and e.get("status") == "applied"]
    after = applied[-1] if applied else len(events)
    down = [i for i in range(after, len(events)) if kinds[i] == "disconnected"]
    reconnected = bool(down) and "connected" in kinds[down[0]:]
    drained = [e for e in events if e["event"] == "drained"]
    lows = [e["heap_min"] for e in events if isinstance(e.get("heap_min"), int) and e["heap_min"] > 0]
    boots = [e["heap_free"] for e in events if e["event"] == "boot"]
    checks = [
        ("MemoryError" not in log, _memory_error(log)),
        ("reset" not in kinds, "reset: " + next((str(e.get("why")) for e in events
                                                 if e["event"] == "reset"), "")),
        (not any(e["event"] == "stopped" and e.get("why") == "memory" for e in events),
         "agent stopped: memory"),
        (not any(e["event"] == "start" and e.get("resets") for e in events),
         "reset: the runner restarted the agent"),
        ("Traceback" not in log, "crashed (traceback)"),
        (alive, "the device process exited"),
        ("boot" in kinds, "never booted"),
        (bool(applied), "no signed config applied"),
        (reconnected, "no reconnect after the broker restart"),
        (any(e.get("acked") == records for e in drained), f"not every record acked ({records})"),
        (cloud_seqs == list(range(1, records + 1)),
         f"cloud holds {len(cloud_seqs)} of {records} records (or not exactly once)"),
    ]
    why = next((reason for ok, reason in checks if not ok), "")
    return HeapTrial(profile, heap_kb, not why, why, len(cloud_seqs),
                     boots[0] if boots else None, min(lows) if lows else None,
                     bool(applied), reconnected)


def _memory_error(log: str) -> str:
    """'MemoryError' with the first one's message and innermost frame, when the log has them."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("MemoryError"):
            where = lines[i - 1].strip() if i and lines[i - 1].startswith("  File") else ""
            return line.strip() + (f" ({where})" if where else "")
    return "MemoryError"


def heap_round(stack: Stack, trials: list[tuple[str, int]], seconds: float, interval_ms: int,
               tag: str, log: Callable[[str], None] = lambda _: None) -> list[HeapTrial]:
    """Run one device per (profile, heap_kb) at once through `stack` (started) and judge them."""
    records = max(3, int(seconds * 1000 // interval_ms))
    devices = [_Device(f"{profile}-{tag}-{heap}k", profile, heap, records)
               for profile, heap in trials]
    stack.keygen([d.device_id for d in devices])
    stack.enrol([(d.device_id, d.profile) for d in devices])  # the factory's step, all at once
    start = time.monotonic()
    for d in devices:
        d.proc = stack.start_device(d.device_id, d.profile, records=records,
                                    interval_ms=interval_ms, heap=f"{d.heap_kb}K")

    def at(fraction: float) -> None:
        time.sleep(max(0.0, start + seconds * fraction - time.monotonic()))

    def settled(d: _Device, what: str) -> bool:
        return not d.proc.alive or what in d.proc.log()

    at(1 / 3)  # a signed config from the cloud, through the gateway, to every device
    with stack.admin() as client:
        for d in devices:
            resp = client.put(f"/api/v1/devices/{d.device_id}/config",
                              json={"settings": {"interval_ms": interval_ms}})
            resp.raise_for_status()
    _wait(lambda: all(settled(d, '"applied"') for d in devices), seconds / 3 + 15)
    at(2 / 3)  # the broker restarts under everyone: each device must reconnect
    status = stack.gateway_status() or {}
    broker = status.get("broker", {})
    if broker.get("pid"):
        os.kill(int(broker["pid"]), signal.SIGKILL)
        _wait(lambda: ((stack.gateway_status() or {}).get("broker", {}).get("restarts", 0)
                       > broker.get("restarts", 0)), 30)
    at(1.0)

    def drained(d: _Device) -> bool:
        return settled(d, f'"acked": {records},') or settled(d, f'"acked": {records}}}')

    _wait(lambda: all(drained(d) for d in devices), 45 + seconds / 2)
    # The gateway acks a record once stored; it reaches the cloud with the next batch upload.
    _wait(lambda: all(len(stack.telemetry(d.device_id)) >= records
                      for d in devices if drained(d) and d.proc.alive), 30)
    results = []
    for d in devices:
        seqs = [int(r["seq"]) for r in stack.telemetry(d.device_id)]
        alive = d.proc.alive
        d.proc.stop()
        trial = judge(d.proc.log(), records, seqs, alive, d.profile, d.heap_kb)
        log(f"{d.profile} at {d.heap_kb} KB: " + ("runs" if trial.runs else "fails: " + trial.why)
            + f" (lowest free {trial.lowest_free} B)")
        results.append(trial)
    return results


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


def bench_heap(profiles: tuple[str, ...] = PROFILES, seconds: float = 60.0,
               interval_ms: int = 250, floor_kb: int = HEAP_FLOOR_KB, top_kb: int = HEAP_TOP_KB,
               home: Path | None = None, log: Callable[[str], None] = lambda _: None,
               ) -> dict[str, Any]:
    """Bisect, for every profile at once, the smallest heap (in KB) it runs at.

    Round 1 runs every profile at `top_kb` (its lowest free heap is reported) and at the
    budget's 56 KB; later rounds bisect between the largest size that failed (initially
    `floor_kb`, assumed to fail) and the smallest that ran. A profile that does not run at
    `top_kb` gets runs_at_kb None.
    """
    trials: list[HeapTrial] = []
    # SIGTERM stops the bench like Ctrl-C: every process it started is stopped on the way out.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-heap-") as tmp:
        stack = Stack(home=home or Path(tmp))
        try:
            stack.start_path([])
            first = [(p, top_kb) for p in profiles]
            first += [(p, HEAP_REQUIRED_KB) for p in profiles if floor_kb < HEAP_REQUIRED_KB < top_kb]
            trials += heap_round(stack, first, seconds, interval_ms, "r1", log)
            bounds: dict[str, list[int]] = {}  # profile -> [largest failing, smallest running]
            for p in profiles:
                ran = [t.heap_kb for t in trials if t.profile == p and t.runs]
                failed = [t.heap_kb for t in trials if t.profile == p and not t.runs]
                if top_kb in ran:
                    bounds[p] = [max([floor_kb, *(f for f in failed if f < min(ran))]), min(ran)]
            n = 2
            while True:
                todo = [(p, (lo + hi) // 2) for p, (lo, hi) in bounds.items() if hi - lo > 1]
                if not todo:
                    break
                for t in heap_round(stack, todo, seconds, interval_ms, f"r{n}", log):
                    trials.append(t)
                    b = bounds[t.profile]
                    b[1 if t.runs else 0] = t.heap_kb
                n += 1
        finally:
            stack.stop()
            signal.signal(signal.SIGTERM, previous)
    out: dict[str, Any] = {
        "seconds": seconds, "interval_ms": interval_ms, "floor_kb": floor_kb, "top_kb": top_kb,
        "required_kb": HEAP_REQUIRED_KB, "profiles": {}, "trials": [asdict(t) for t in trials],
    }
    for p in profiles:
        mine = [t for t in trials if t.profile == p]
        ran = [t.heap_kb for t in mine if t.runs]
        top = next((t for t in mine if t.heap_kb == top_kb), None)
        out["profiles"][p] = {
            "runs_at_kb": min(ran) if top is not None and top.runs else None,
            "runs_at_required": any(t.runs and t.heap_kb <= HEAP_REQUIRED_KB for t in mine),
            "lowest_free_at_64k_bytes": top.lowest_free if top else None,
            "boot_free_at_64k_bytes": top.boot_free if top else None,
            "failed_at_kb": sorted(t.heap_kb for t in mine if not t.runs),
        }
    return out


def boot_heap(profiles: tuple[str, ...] = PROFILES, heap_kb: int = HEAP_TOP_KB,
              home: Path | None = None) -> dict[str, dict[str, int | None]]:
    """Heap free at the agent's boot event, firmware from the ROMFS image vs .mpy files in lib/
    (no broker needed: the boot event comes before the first connect)."""
    from fwtool import keys
    from fwtool.provision import provision

    from fleetloop.device_runner import device_command, micropython_binary

    out: dict[str, dict[str, int | None]] = {}
    with tempfile.TemporaryDirectory(prefix="fleetloop-boot-heap-") as tmp:
        root = home or Path(tmp)
        ids = [f"{p}-boot" for p in profiles]
        keys.generate(root, ["gw-boot"], ids)
        for p, device_id in zip(profiles, ids, strict=True):
            image = provision(root, device_id, p, "localhost", 9)  # nothing listens there
            romfs_argv, env, cwd = device_command(image, "micropython", heap=f"{heap_kb}K")
            lib_argv = [micropython_binary(), "-X", f"heapsize={heap_kb}K", "-m", "boot", "."]
            out[p] = {"romfs": _boot_free(romfs_argv, env, cwd), "mpy": _boot_free(lib_argv, env, cwd)}
    return out


def _boot_free(argv: list[str], env: dict[str, str], cwd: Path) -> int | None:
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                return None
            for event in _events(line.decode(errors="replace")):
                if event["event"] == "boot":
                    return int(event["heap_free"])
        return None
    finally:
        proc.kill()
        proc.wait()


def heap_table(result: dict[str, Any]) -> str:
    """The docs table (between the markers in docs/benchmarks.md), from a bench heap result."""
    boot = result.get("boot_heap", {})
    rows = [
        "| profile | runs at | lowest free at 64 KB | free at boot, 64 KB: ROMFS / .mpy | failed at |",
        "|---|---|---|---|---|",
    ]

    def kb(value: int | None) -> str:
        return "-" if value is None else f"{value / 1024:.1f} KB"

    for name, p in result["profiles"].items():
        b = boot.get(name, {})
        runs = "does not run" if p["runs_at_kb"] is None else f"{p['runs_at_kb']} KB"
        failed = ", ".join(f"{k} KB" for k in p["failed_at_kb"]) or "-"
        rows.append(f"| {name} | {runs} | {kb(p['lowest_free_at_64k_bytes'])} | "
                    f"{kb(b.get('romfs'))} / {kb(b.get('mpy'))} | {failed} |")
    rows.append("")
    rows.append(f"Each run: {result['seconds']:g} s sampling every {result['interval_ms']} ms, a signed "
                f"config applied, one broker restart survived, every record acked and in the cloud "
                f"exactly once, no reset, no MemoryError; bisected in 1 KB steps between "
                f"{result['floor_kb']} KB and {result['top_kb']} KB "
                f"({len(result['trials'])} runs, measured {result.get('measured', '?')}).")
    return "\n".join(rows)


def marks(key: str) -> tuple[str, str]:
    """The markers around a generated table in docs/benchmarks.md."""
    return (f"<!-- bench {key}: begin (generated by `fleetloop bench {key}`; do not edit) -->",
            f"<!-- bench {key}: end -->")


def machine() -> dict[str, Any]:
    """What a figure was measured on (kept with every result)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model or platform.processor(),
            "python": platform.python_version(), "system": platform.platform(terse=True)}


def write_section(key: str, result: dict[str, Any], table: str, results: Path,
                  docs: Path) -> None:
    """bench/results.json gets `result` under `key`, stamped with the machine and the date
    unless it carries them; the docs table between the key's markers is replaced by `table`."""
    result.setdefault("measured", time.strftime("%Y-%m-%d", time.gmtime()))
    result.setdefault("machine", machine())
    results.parent.mkdir(parents=True, exist_ok=True)
    try:
        saved = json.loads(results.read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    saved[key] = result
    results.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    begin_mark, end_mark = marks(key)
    text = docs.read_text()
    begin, end = text.find(begin_mark), text.find(end_mark)
    if begin < 0 or end < begin:
        raise ValueError(f"{docs} has no bench {key} markers")
    docs.write_text(text[:begin + len(begin_mark)] + "\n" + table + "\n" + text[end:])


def write_heap_results(result: dict[str, Any], results: Path, docs: Path) -> None:
    """bench/results.json gets the result under "heap"; the docs table is regenerated."""
    write_section("heap", result, heap_table(result), results, docs)
