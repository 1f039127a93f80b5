"""The whole path on real parts: MicroPython device -> Mosquitto (started by the gateway) ->
gateway -> uvicorn cloud -> back to the device as a signed config."""

from __future__ import annotations

import pytest

from fleetloop.stack import Stack, seqs_of, wait_records

pytestmark = pytest.mark.e2e

N = 60


def reported(stack: Stack, device_id: str) -> dict:
    for row in stack.cloud_devices():
        if row["id"] == device_id:
            return row.get("reported") or {}
    return {}


def test_records_arrive_exactly_once_and_a_config_comes_back_applied(stack: Stack) -> None:
    stack.start_path(["bike-1"])
    stack.start_device("bike-1", "bike", records=N, interval_ms=100)

    records = wait_records(stack, "bike-1", N)
    assert seqs_of(records) == list(range(1, N + 1))

    state = stack.wait_until(lambda: reported(stack, "bike-1").get("impl") and reported(stack, "bike-1"),
                             what="the device's reported state")
    assert state["impl"] == "micropython"

    with stack.admin() as client:
        resp = client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 700}})
        assert resp.status_code == 200, resp.text
        version = resp.json()["version"]

    def applied() -> dict | None:
        with stack.admin() as client:
            rep = client.get("/api/v1/devices/bike-1/config").json().get("reported") or {}
        return rep if rep.get("config_version") == version else None

    rep = stack.wait_until(applied, timeout=30, what="config reported as applied")
    assert rep["config_status"] == "applied"


def test_a_config_the_device_cannot_accept_is_refused_by_the_cloud(stack: Stack) -> None:
    stack.start_path(["bike-1"])
    with stack.admin() as client:
        resp = client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 1}})
    assert resp.status_code == 422
    assert "interval_ms" in resp.text
