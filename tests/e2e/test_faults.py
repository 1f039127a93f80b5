"""Faults made to happen: kill -9 of the gateway, of Mosquitto, of the device; a cloud outage.
Each time, every record reaches the cloud exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from fleetloop.procs import pids_mentioning
from fleetloop.stack import Stack, seqs_of, wait_records
from gateway.procs import pid_alive

pytestmark = pytest.mark.e2e

N = 80  # 8 s of sampling: every fault below lands mid-stream


def mosquitto_pids(home: Path) -> list[int]:
    """Mosquitto processes started for this home (their config lives under it)."""
    def is_mosquitto(pid: int) -> bool:
        try:
            return b"mosquitto" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False  # gone meanwhile

    return [pid for pid in pids_mentioning(str(home)) if is_mosquitto(pid)]


def assert_exactly_once(stack: Stack, device_id: str, count: int) -> None:
    records = wait_records(stack, device_id, count, timeout=120)
    assert seqs_of(records) == list(range(1, count + 1))


def test_kill_9_of_the_gateway_loses_nothing_and_leaves_no_orphan_broker(stack: Stack) -> None:
    stack.start_path(["bike-1"])
    stack.start_device("bike-1", "bike", records=N, interval_ms=100)
    wait_records(stack, "bike-1", 10)
    old_broker = stack.gateway_status()["broker"]["pid"]
    assert stack.gateway is not None
    stack.gateway.kill9()
    stack.wait_until(lambda: not pid_alive(old_broker), timeout=10, what="the old broker to go")
    time.sleep(1)
    stack.start_gateway()
    assert_exactly_once(stack, "bike-1", N)
    assert mosquitto_pids(stack.home) == [stack.gateway_status()["broker"]["pid"]]


def test_kill_9_of_mosquitto_after_pubacks_loses_nothing(stack: Stack) -> None:
    stack.start_path(["bike-1"])
    stack.start_device("bike-1", "bike", records=N, interval_ms=100)
    wait_records(stack, "bike-1", 10)
    broker = stack.gateway_status()["broker"]["pid"]
    os.kill(broker, signal.SIGKILL)
    stack.wait_until(lambda: (stack.gateway_status() or {}).get("broker", {}).get("restarts", 0) >= 1,
                     timeout=30, what="the gateway to restart its broker")
    assert_exactly_once(stack, "bike-1", N)


def test_kill_9_of_the_device_then_restart_continues_seq(stack: Stack) -> None:
    stack.start_path(["bike-1"])
    proc = stack.start_device("bike-1", "bike", records=N, interval_ms=100)
    wait_records(stack, "bike-1", 20)
    proc.kill9()
    stack.start_device("bike-1", "bike", records=N, interval_ms=100)
    assert_exactly_once(stack, "bike-1", N)


def test_cloud_down_for_10_seconds_then_everything_arrives_once(stack: Stack) -> None:
    stack.start_path(["bike-1"])
    stack.start_device("bike-1", "bike", records=N, interval_ms=100)
    wait_records(stack, "bike-1", 5)
    assert stack.cloud is not None
    stack.cloud.stop()
    time.sleep(10)
    status = stack.gateway_status()
    assert status is not None and status["uplink"]["last_error"], "the gateway should see the outage"
    stack.start_cloud()
    assert_exactly_once(stack, "bike-1", N)
    # Chain intact: the cloud accepted every batch in order and nothing waits in the spool.
    stack.wait_until(lambda: stack.gateway_status()["spool"]["batches"] == 0, timeout=30,
                     what="an empty spool")


def test_a_device_whose_flash_was_wiped_starts_a_new_life_next_to_its_old_one(stack: Stack) -> None:
    """Same gateway, which still holds the first life's registry: the wiped device draws a new
    incarnation and starts again at seq 1; nothing of either life is taken for a duplicate."""
    stack.start_path(["bike-1"])
    proc = stack.start_device("bike-1", "bike", records=20, interval_ms=100)
    wait_records(stack, "bike-1", 20)
    proc.stop()
    shutil.rmtree(stack.home / "devices" / "bike-1" / "data")  # factory reset / new flash
    wiped_ms = int(time.time() * 1000)
    stack.start_device("bike-1", "bike", records=20, interval_ms=100)
    records = wait_records(stack, "bike-1", 40, timeout=120)
    lives: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        lives.setdefault(r["incarnation"], []).append(r)
    first, second = lives.values()  # in the order the cloud first saw them
    assert [r["seq"] for r in first] == [r["seq"] for r in second] == list(range(1, 21))
    assert all(r["t"] < wiped_ms for r in first), "the first life's records stay as they were"
    assert all(r["t"] >= wiped_ms for r in second)
