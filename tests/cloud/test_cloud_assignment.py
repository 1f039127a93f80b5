"""A device belongs to the first gateway that delivers its data; only an operator moves it."""

from __future__ import annotations

from typing import Any

import pytest
from cloudkit import ADMIN, GatewaySim, counts, rec, register, state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient


@pytest.fixture
def gw2(client: TestClient) -> GatewaySim:
    key = Ed25519PrivateKey.generate()
    return GatewaySim(client, "gw-2", key, register(client, "gw-2", key))


def device(client: TestClient, device_id: str = "bike-1") -> dict[str, Any]:
    r = client.get(f"/api/v1/devices/{device_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def seqs(app: FastAPI, device_id: str) -> list[tuple[int, str]]:
    with app.state.db.connection() as store:
        return [(r.seq, r.gateway) for r in store.telemetry(device_id, 0, 0, 1000)]


def move(client: TestClient, gateway_id: str, device_id: str = "bike-1") -> Any:
    return client.put(f"/api/v1/devices/{device_id}/gateway", json={"gateway": gateway_id},
                      headers=ADMIN)


def test_a_foreign_gateway_cannot_push_a_devices_seq_ahead(
    app: FastAPI, client: TestClient, gateway: GatewaySim, gw2: GatewaySim
) -> None:
    # The fault: gw-2, with its own valid token and batch key, sends a record for gw-1's bike-1
    # with a seq ahead of it. Stored, it would make bike-1's real record with that seq a
    # "duplicate" and lose it.
    assert gateway.push([rec("bike-1", 1)]).json()["stored"] == 1
    r = gw2.push([rec("bike-1", 2, power=666), rec("mirror-2", 1)])
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 1, "seq": 1}
    (held,) = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert held["reason"] == "device bike-1 is assigned to gateway gw-1"
    assert (held["seq"], held["gateway"]) == (2, "gw-2")
    r = gateway.push([rec("bike-1", 2, power=102)])  # the real record with that seq
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 0, "seq": 2}
    assert seqs(app, "bike-1") == [(1, "gw-1"), (2, "gw-1")]
    bike = device(client)
    assert bike["gateway"] == "gw-1" and bike["last_metrics"] == {"power": 102}
    assert bike["quarantined"] == 1
    assert device(client, "mirror-2")["gateway"] == "gw-2"


def test_states_from_a_foreign_gateway_are_quarantined(
    client: TestClient, gateway: GatewaySim, gw2: GatewaySim
) -> None:
    mine = state("bike-1", t=10, config_status="none")
    gateway.push([], [mine])
    r = gw2.push([], [state("bike-1", t=20, config_status="applied", config_version=9)])
    assert r.json()["quarantined"] == 1
    assert device(client)["reported"] == mine


def test_registered_device_is_assigned_on_first_delivery(
    client: TestClient, gateway: GatewaySim, gw2: GatewaySim
) -> None:
    client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=ADMIN)
    assert device(client)["gateway"] is None
    gw2.push([rec("bike-1", 1)])
    assert device(client)["gateway"] == "gw-2"
    assert gateway.push([rec("bike-1", 2)]).json()["quarantined"] == 1


def test_operator_moves_a_device(
    app: FastAPI, client: TestClient, gateway: GatewaySim, gw2: GatewaySim
) -> None:
    gateway.push([rec("bike-1", 1)])
    r = move(client, "gw-2")
    assert r.status_code == 200, r.text
    assert r.json()["gateway"] == "gw-2" and r.json()["records"] == 1
    assert gw2.push([rec("bike-1", 2)]).json()["stored"] == 1
    assert gateway.push([rec("bike-1", 3)]).json()["quarantined"] == 1
    assert seqs(app, "bike-1") == [(1, "gw-1"), (2, "gw-2")]


def test_move_refusals(client: TestClient, gateway: GatewaySim) -> None:
    gateway.push([rec("bike-1", 1)])
    before = device(client)
    assert move(client, "gw-9").status_code == 422
    assert "gw-9 is not registered" in move(client, "gw-9").json()["detail"]
    assert move(client, "gw-1", "nope").status_code == 404
    for body in ({}, {"gateway": "gw/1"}, {"gateway": "gw-1", "x": 1}):
        assert client.put("/api/v1/devices/bike-1/gateway", json=body, headers=ADMIN).status_code == 422
    r = client.put("/api/v1/devices/bike-1/gateway", json={"gateway": "gw-1"},
                   headers={"Authorization": f"Bearer {gateway.token}"})
    assert r.status_code == 403  # a gateway cannot claim devices
    assert device(client) == before


def feed(client: TestClient, sim: GatewaySim, after: int) -> tuple[int, list[tuple[str, int]]]:
    r = client.get("/api/v1/gateway/configs", params={"after": after},
                   headers={"Authorization": f"Bearer {sim.token}"})
    assert r.status_code == 200, r.text
    body = r.json()
    return body["revision"], [(c["device"], c["version"]) for c in body["configs"]]


def test_the_new_gateway_learns_a_moved_devices_config(
    app: FastAPI, client: TestClient, gateway: GatewaySim, gw2: GatewaySim
) -> None:
    gateway.push([rec("bike-1", 1)])
    gw2.push([rec("bike-2", 1)])
    for device_id, interval in (("bike-1", 500), ("bike-1", 600), ("bike-2", 700)):
        r = client.put(f"/api/v1/devices/{device_id}/config",
                       json={"settings": {"interval_ms": interval}}, headers=ADMIN)
        assert r.status_code == 200
    cursor1, got1 = feed(client, gateway, 0)
    cursor2, got2 = feed(client, gw2, 0)
    assert got1 == [("bike-1", 2)] and got2 == [("bike-2", 1)]
    assert feed(client, gw2, cursor2)[1] == []  # gw-2 is up to date

    assert move(client, "gw-2").status_code == 200
    # gw-2's next poll, from its cursor, carries bike-1's latest config (older than the cursor)
    revision, got = feed(client, gw2, cursor2)
    assert got == [("bike-1", 2)] and revision > cursor2
    assert feed(client, gw2, revision)[1] == []
    # gw-1 no longer gets bike-1's config, not even from the start
    assert feed(client, gateway, 0)[1] == []
    assert feed(client, gateway, cursor1)[1] == []
    assert counts(app)["configs"] == 3  # nothing re-signed: the same envelope, announced again
    # moving a device to the gateway it has changes nothing
    assert move(client, "gw-2").status_code == 200
    assert feed(client, gw2, revision) == (revision, [])
    # later configs of bike-1 go to gw-2
    client.put("/api/v1/devices/bike-1/config", json={"settings": {}}, headers=ADMIN)
    assert feed(client, gw2, revision)[1] == [("bike-1", 3)]
    assert feed(client, gateway, revision)[1] == []
