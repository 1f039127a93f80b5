"""A gateway whose disk has no room stops acknowledging instead of failing, starts anyway after
a kill -9, says so in its status, and resumes by itself when space returns.

In `make test` the "full disk" is the free-space floor (--disk-min-free) set a few hundred MB
under what is free, and a file allocated with posix_fallocate (instant, no data written) takes
the disk under it. In `make chaos` the state lives on a really full filesystem: a 16 MB tmpfs
mounted for the test (root only; skipped elsewhere), filled with a file until the kernel says
ENOSPC, as a new user would meet it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gwkit import Child, Device, FakeCloud, child_status, gateway_argv, gateway_settings, wait_for

from gateway.settings import Settings

MB = 1024 * 1024


def _status(s: Settings) -> dict[str, Any] | None:
    return child_status(s)


def _up(s: Settings) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        st = _status(s)
        return st if st and st["broker"]["up"] and st["ingest"]["link"] == "up" else None
    return check


def _allocate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def _kill_gateway(child: Child, s: Settings) -> None:
    st = _status(s)
    assert child.popen is not None
    child.popen.send_signal(signal.SIGKILL)
    child.popen.wait(10)
    if st is not None:  # a power cut takes its broker too
        try:
            os.kill(st["broker"]["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def _publish(dev: Device, seqs: range) -> None:
    for seq in seqs:
        dev.client.publish(f"fleet/{dev.device_id}/telemetry", dev.record(seq), qos=1)


def _run_full_disk_scenario(home: Path, cloud: FakeCloud, children: Callable[..., Child],
                            devices: Callable[..., Device], log_dir: Path, floor: int,
                            fill: Callable[[], None], free: Callable[[], None]) -> None:
    settings = gateway_settings(home, cloud.url)
    argv = gateway_argv(settings) + ["--disk-min-free", str(floor)]
    child = children(argv, log_dir / "gw1.log")
    wait_for(_up(settings), 30, "gateway up")
    bike = devices(home, "bike-1", settings.mqtt_port)
    _publish(bike, range(1, 51))
    wait_for(lambda: bike.acked == 50, 20, "50 acked")

    fill()
    st = wait_for(lambda: (s := _status(settings)) and not s["ingest"]["acking"]
                  and s, 20, "ingest paused")
    assert st["disk"]["full"] and "disk full" in st["ingest"]["paused_reason"]
    _publish(bike, range(51, 61))
    time.sleep(1.0)
    assert bike.acked == 50  # nothing acked that is not stored: the device keeps them

    _kill_gateway(child, settings)
    bike.client.disconnect()
    bike.client.loop_stop()
    children(argv, log_dir / "gw2.log")  # on the full disk
    st = wait_for(_up(settings), 30, "gateway up on a full disk")
    assert st["ingest"]["acking"] is False and st["disk"]["full"] is True
    assert "disk full" in st["ingest"]["paused_reason"]
    bike = devices(home, "bike-1", settings.mqtt_port)
    _publish(bike, range(51, 61))  # the device sends what was never acked again
    time.sleep(0.5)
    assert bike.acked in (-1, 50)

    free()
    wait_for(lambda: bike.acked == 60, 30, "all 60 acked once space is back")
    st = _status(settings)
    assert st is not None and st["ingest"]["acking"] is True and st["disk"]["full"] is False
    wait_for(lambda: cloud.seqs("bike-1") == list(range(1, 61)), 20, "60 records in the cloud")


def test_a_full_disk_pauses_acks_survives_kill_9_and_resumes(
        home: Path, cloud: FakeCloud, children: Callable[..., Child],
        devices: Callable[..., Device], tmp_path: Path) -> None:
    stat = os.statvfs(tmp_path)
    free_now = stat.f_bavail * stat.f_frsize
    if free_now < 1024 * MB:
        pytest.skip("needs 1 GB free to move the floor around")
    filler = tmp_path / "filler"
    _run_full_disk_scenario(home, cloud, children, devices, tmp_path,
                            floor=free_now - 256 * MB,
                            fill=lambda: _allocate(filler, 512 * MB),
                            free=filler.unlink)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of the test's own (needs root and mount)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb") as fh:
        chunk = b"\0" * 65536
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError:
            pass


@pytest.mark.chaos
def test_a_really_full_filesystem(small_fs: Path, home: Path, cloud: FakeCloud,
                                  children: Callable[..., Child],
                                  devices: Callable[..., Device], tmp_path: Path) -> None:
    small_home = small_fs / "home"
    shutil.copytree(home, small_home)
    filler = small_fs / "filler"
    _run_full_disk_scenario(small_home, cloud, children, devices, tmp_path, floor=0,
                            fill=lambda: _fill(filler), free=filler.unlink)
