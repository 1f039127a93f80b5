"""Runs the common-subset device test modules (t_*.py) under CPython and the real MicroPython
unix port, through mp_runner.py (MicroPython has no pytest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from devkit import MICROPYTHON, REPO

HERE = Path(__file__).resolve().parent
MODULES = sorted(p.stem for p in HERE.glob("t_*.py"))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_common_subset(interpreter: str, module: str, unit_data: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    path = f"{REPO}:{HERE}"
    if interpreter == "micropython":
        # A roomy heap for the unit tests: they import protocol (Ed25519 verify) next to the
        # device code. The 64 KB budget is checked by the integration tests.
        argv = [MICROPYTHON, "-X", "heapsize=1M"]
        env["MICROPYPATH"] = path
    else:
        argv = [sys.executable]
        env["PYTHONPATH"] = path
    result = subprocess.run(
        [*argv, str(HERE / "mp_runner.py"), str(tmp_path), str(unit_data), module],
        env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"SUMMARY {interpreter} " in out and "failed=0" in out, out
    assert "passed=0" not in out, out
