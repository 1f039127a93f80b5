"""`fleetloop demo` as a user runs it: three MicroPython devices deliver, and when it stops,
nothing it started is left running."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fleetloop.procs import Process, pids_mentioning
from fleetloop.stack import Stack

pytestmark = pytest.mark.e2e


def test_demo_delivers_three_devices_and_leaves_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    demo = Process("demo", [sys.executable, "-m", "fleetloop", "demo", "--home", str(home),
                            "--seconds", "15"], tmp_path / "demo.log").start()
    try:
        assert demo.popen is not None
        code = demo.popen.wait(timeout=120)
    finally:
        demo.stop()
    log = demo.log()
    assert code == 0, log
    assert "dashboard: http://127.0.0.1:" in log
    assert pids_mentioning(str(home)) == []

    # Read what the cloud stored, with the cloud started again on the demo's own state.
    stack = Stack(home=home)
    try:
        stack.start_cloud()
        rows = {row["id"]: row for row in stack.cloud_devices()}
    finally:
        stack.stop()
    for device_id in ("bike-1", "mirror-1", "engine-1"):
        assert rows[device_id]["records"] > 0, (device_id, log)
        assert (rows[device_id].get("reported") or {}).get("impl") == "micropython"
