"""Runs a vector script of tests/protocol under CPython or the real MicroPython interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
MICROPYTHON = Path(sys.executable).with_name("micropython")
INTERPRETERS = ("cpython", "micropython")


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def run_script(script: str, interpreter: str, heap: str = "64K") -> str:
    """stdout of `tests/protocol/<script> VECTORS` on `interpreter`; fails the test on a
    non-zero exit, with the script's output."""
    path = str(ROOT / "tests" / "protocol" / script)
    if interpreter == "cpython":
        cmd = [sys.executable, path, str(VECTORS)]
    else:
        cmd = [str(MICROPYTHON), "-X", f"heapsize={heap}", path, str(VECTORS)]
    env = dict(os.environ, MICROPYPATH=str(ROOT), PYTHONPATH=str(ROOT))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout
