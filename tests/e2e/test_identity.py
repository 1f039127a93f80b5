"""A record's identity survives any reset, and only the device and the cloud hold its key.

Real cloud, two real gateways with their own Mosquitto, a real MicroPython device."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from fleetloop.stack import Stack

pytestmark = pytest.mark.e2e


def records_by_incarnation(stack: Stack, device_id: str) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for rec in stack.telemetry(device_id):
        out.setdefault(int(rec["incarnation"]), []).append(int(rec["seq"]))
    return out


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_a_wiped_device_moved_to_another_gateway_delivers_every_new_record(stack: Stack) -> None:
    """bike-1 delivers through gw-1; its flash is wiped, an operator moves it to gw-2, whose
    registry has never seen it. It starts again at seq 1 under a new incarnation, and every
    new record reaches the cloud next to the old ones: none is taken for a duplicate."""
    stack.start_path(["bike-1"])
    stack.start_device("bike-1", "bike", records=12, interval_ms=100)
    stack.wait_until(lambda: sum(map(len, records_by_incarnation(stack, "bike-1").values())) >= 12,
                     timeout=60, what="12 records of bike-1's first life")
    stack.devices["bike-1"].stop()
    shutil.rmtree(stack.home / "devices" / "bike-1" / "data")  # the wipe: buffer, seq, everything

    gw2 = stack.with_gateway("gw-2")
    gw2.keygen([])
    gw2.register_gateway()
    gw2.start_gateway()
    with stack.admin() as admin:
        moved = admin.put("/api/v1/devices/bike-1/gateway", json={"gateway": "gw-2"})
        assert moved.status_code == 200, moved.text
    gw2.start_device("bike-1", "bike", records=8, interval_ms=100)

    def both_lives() -> dict[int, list[int]] | None:
        lives = records_by_incarnation(stack, "bike-1")
        return lives if len(lives) == 2 and sorted(map(len, lives.values())) == [8, 12] else None

    lives = stack.wait_until(both_lives, timeout=60, what="8 records of bike-1's second life")
    assert sorted(lives.values(), key=len) == [list(range(1, 9)), list(range(1, 13))]
    with stack.admin() as admin:
        device = admin.get("/api/v1/devices/bike-1").json()
    assert device["gateway"] == "gw-2" and device["quarantined"] == 0

    # The record key is the device's and the cloud's: no trace of it at either gateway.
    key = (stack.home / "keys" / "devices" / "bike-1" / "record.key").read_bytes()
    forms = [key, key.hex().encode(), base64.b64encode(key), base64.b64encode(key).rstrip(b"=")]
    gateway_files = files_under(stack.home / "gateways", stack.home / "logs")
    assert len(gateway_files) > 5
    leaks = [str(p.relative_to(stack.home)) for p in gateway_files
             if any(form in p.read_bytes() for form in forms)]
    assert leaks == []
