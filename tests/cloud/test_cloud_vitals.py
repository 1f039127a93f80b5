"""Vitals: every verified state is kept (newest 1000 per device) and listed; absurd ones are
quarantined without stopping the rest of their batch."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cloudkit import ADMIN, T0, GatewaySim, enrol, rec, signed, signed_state, state
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.services import vitals
from cloud.store import DeviceRow, HeartbeatRow

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "states.json").read_text())
KEY = base64.b64decode(VECTORS["record_key"])
VITALS = next(v for v in VECTORS["valid"] if "uptime_s" in v["fields"])


def listed(client: TestClient, device_id: str = "bike-1", **params: Any) -> Any:
    return client.get(f"/api/v1/devices/{device_id}/vitals", params=params, headers=ADMIN)


def test_a_vitals_state_is_stored_and_shown(client: TestClient, gateway: GatewaySim) -> None:
    enrol(client, "bike-1", KEY)
    r = gateway.push([], [VITALS["wire"]])
    assert r.json()["quarantined"] == 0
    (beat,) = listed(client).json()
    want = {k: v for k, v in VITALS["fields"].items()}
    assert beat == {"incarnation": want["i"], "t": want["t"], "received_ms": T0, "state": want}
    got = client.get("/api/v1/devices/bike-1", headers=ADMIN).json()
    assert got["vitals"] == {k: want[k] for k in (
        "why", "uptime_s", "heap_free", "heap_low", "buffer_bytes", "buffered", "dropped",
        "reconnects", "resets", "reset_cause", "consent", "hint_ms", "rssi", "t")}
    html = client.get("/", headers=ADMIN).text
    assert "heap low 6800 B" in html and "up 1 h" in html and "2 reconnects" in html


def test_states_are_listed_newest_first(client: TestClient, gateway: GatewaySim) -> None:
    gateway.push([rec("bike-7", 1)], [state("bike-7", t=T0 + n, uptime_s=n) for n in (3, 1, 2)])
    gateway.push([], [state("bike-7", t=T0 + 9, why="heartbeat", heap_low=100)])
    beats = listed(client, "bike-7").json()
    assert [b["t"] - T0 for b in beats] == [9, 3, 2, 1]
    assert beats[1]["state"] == {"v": 1, "d": "bike-7", "t": T0 + 3, "uptime_s": 3}
    assert [b["t"] - T0 for b in listed(client, "bike-7", limit=2).json()] == [9, 3]
    for limit in (0, 1001, "x"):
        assert listed(client, "bike-7", limit=limit).status_code == 422
    assert listed(client, "bike-9").status_code == 404
    assert client.get("/api/v1/devices/bike-7/vitals").status_code == 401


def test_states_are_pruned_to_the_bound(
    client: TestClient, gateway: GatewaySim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vitals, "MAX_PER_DEVICE", 5)
    key = b"k" * 32
    enrol(client, "bike-1", key)
    for first in (0, 4, 8):
        gateway.push([], [signed_state("bike-1", key, t=T0 + n) for n in range(first, first + 4)])
    gateway.push([rec("bike-7", 1)], [state("bike-7", t=T0)])
    assert [b["t"] - T0 for b in listed(client).json()] == [11, 10, 9, 8, 7]
    assert len(listed(client, "bike-7").json()) == 1  # another device's are its own


def test_the_store_keeps_the_newest_thousand(app: FastAPI) -> None:
    with app.state.db.connection() as store, store.transaction():
        store.insert_device(DeviceRow(id="bike-1", product=None, created_ms=0))
        for start in range(0, 1010, 101):
            store.insert_heartbeats([HeartbeatRow("bike-1", 1, t, 0, {"t": t})
                                     for t in range(start, min(start + 101, 1010))], 1000)
        beats = store.heartbeats("bike-1", 2000)
    assert [b.t for b in beats] == list(range(1009, 9, -1))


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["why"])
def test_absurd_states_are_quarantined_alone(
    client: TestClient, gateway: GatewaySim, case: dict[str, str]
) -> None:
    enrol(client, "bike-1", KEY)
    r = gateway.push([signed("bike-1", 1, KEY)], [case["wire"], VITALS["wire"]])
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 1, "seq": 1}
    (held,) = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert held["kind"] == "state" and held["reason"]
    assert held["body"] == case["wire"]
    assert len(listed(client).json()) == 1  # the good state of the batch is kept


def test_a_state_with_a_bad_tag_is_no_vitals(client: TestClient, gateway: GatewaySim) -> None:
    enrol(client, "bike-1", KEY)
    forged = VITALS["wire"].replace('"heap_low":6800', '"heap_low":9800')
    r = gateway.push([], [forged])
    assert r.json()["quarantined"] == 1
    assert listed(client).json() == []
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).json()["vitals"] is None
