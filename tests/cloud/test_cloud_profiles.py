"""Config profiles: precedence, versions and rollback, one signed config per device, drift."""

from __future__ import annotations

from typing import Any

import pytest
from cloudkit import ADMIN, T0, Clock, GatewaySim, raw_public, rec, state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from protocol import config as config_codec


def enrol(client: TestClient, device: str, product: str = "bike", **fields: Any) -> None:
    r = client.post("/api/v1/devices", json={"id": device, "product": product, **fields},
                    headers=ADMIN)
    assert r.status_code in (200, 201), r.text


def put(client: TestClient, kind: str, scope: str, **settings: int) -> Any:
    return client.put(f"/api/v1/profiles/{kind}/{scope}", json={"settings": settings},
                      headers=ADMIN)


def desired(client: TestClient, device: str) -> Any:
    return client.get(f"/api/v1/devices/{device}/config", headers=ADMIN).json()["desired"]


def test_precedence_device_over_cohort_over_product(
    client: TestClient, gateway: GatewaySim, config_key: Ed25519PrivateKey
) -> None:
    for n in (1, 2, 3):
        enrol(client, f"bike-{n}", hw_rev="r2" if n < 3 else "r1")
    enrol(client, "mirror-1", product="mirror")
    client.put("/api/v1/cohorts/r2", json={"rule": {"hw_rev": "r2"}}, headers=ADMIN)
    client.put("/api/v1/cohorts/pilot", json={"devices": ["bike-1"], "priority": 10},
               headers=ADMIN)
    r = put(client, "product", "bike", interval_ms=1000, heartbeat_s=60, max_inflight=4)
    assert r.status_code == 200, r.text
    assert r.json()["configs"] == {"bike-1": 1, "bike-2": 1, "bike-3": 1}
    assert put(client, "cohort", "r2", interval_ms=500, max_inflight=8).json()["configs"] == {
        "bike-1": 2, "bike-2": 2}
    assert put(client, "cohort", "pilot", max_inflight=16).json()["configs"] == {"bike-1": 3}
    assert put(client, "device", "bike-1", heartbeat_s=30).json()["configs"] == {"bike-1": 4}
    assert desired(client, "bike-1")["settings"] == {
        "interval_ms": 500, "heartbeat_s": 30, "max_inflight": 16}  # pilot (10) over r2 (0)
    assert desired(client, "bike-2")["settings"] == {
        "interval_ms": 500, "heartbeat_s": 60, "max_inflight": 8}
    assert desired(client, "bike-3")["settings"] == {
        "interval_ms": 1000, "heartbeat_s": 60, "max_inflight": 4}
    assert desired(client, "mirror-1") is None
    # the same settings again: a new profile version, no new config for anyone
    r = put(client, "cohort", "r2", interval_ms=500, max_inflight=8)
    assert r.json()["version"] == 2 and r.json()["configs"] == {}
    # what the gateway relays is the resolved settings, signed with the config key
    feed = client.get("/api/v1/gateway/configs",
                      headers={"Authorization": f"Bearer {gateway.token}"}).json()
    env = {c["device"]: c["envelope"] for c in feed["configs"]}["bike-1"]
    body = config_codec.open_envelope(env.encode(), raw_public(config_key))
    assert body["settings"] == desired(client, "bike-1")["settings"]


def test_versions_and_rollback(client: TestClient) -> None:
    enrol(client, "bike-1")
    put(client, "product", "bike", interval_ms=1000)
    put(client, "product", "bike", interval_ms=250)
    r = client.post("/api/v1/profiles/product/bike/rollback?version=1", headers=ADMIN)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["version"], got["settings"], got["configs"]) == (3, {"interval_ms": 1000},
                                                                 {"bike-1": 3})
    assert [(h["version"], h["active"]) for h in got["history"]] == [
        (3, True), (2, False), (1, False)]
    assert got["history"][0]["created_by"].endswith("(rollback to 1)")
    assert client.get("/api/v1/profiles/product/bike", headers=ADMIN).json() == {
        **got, "configs": {}}
    assert client.post("/api/v1/profiles/product/bike/rollback?version=9",
                       headers=ADMIN).status_code == 404


@pytest.mark.parametrize("kind, scope, values, code", [
    ("product", "bike", {"interval_ms": 5}, 422),  # below protocol.config's bound
    ("product", "bike", {"colour": 1}, 422),
    ("product", "bike", {"interval_ms": "500"}, 422),
    ("cohort", "ghosts", {"interval_ms": 500}, 404),
    ("device", "ghost", {"interval_ms": 500}, 404),
    ("fleet", "all", {"interval_ms": 500}, 422),
])
def test_bad_profiles_are_refused(
    client: TestClient, kind: str, scope: str, values: dict[str, Any], code: int
) -> None:
    enrol(client, "bike-1")
    r = client.put(f"/api/v1/profiles/{kind}/{scope}", json={"settings": values},
                   headers=ADMIN)
    assert r.status_code == code, r.text
    assert desired(client, "bike-1") is None
    assert client.get("/api/v1/profiles/product/bike", headers=ADMIN).status_code == 404


def test_revoked_devices_get_no_config_and_consent_is_carried(client: TestClient) -> None:
    enrol(client, "bike-1")
    enrol(client, "bike-2")
    client.post("/api/v1/devices/bike-2/revoke", json={"reason": "stolen"}, headers=ADMIN)
    client.put("/api/v1/devices/bike-1/consent", json={"tier": "usage"}, headers=ADMIN)
    assert put(client, "product", "bike", interval_ms=800).json()["configs"] == {"bike-1": 2}
    assert desired(client, "bike-2") is None


def test_drift_says_why(client: TestClient, gateway: GatewaySim, clock: Clock) -> None:
    for n in (1, 2, 3, 4):
        enrol(client, f"bike-{n}")
    put(client, "product", "bike", interval_ms=800, heartbeat_s=10)
    gateway.push([rec("bike-1", 1)], [
        state("bike-1", config_version=1, config_status="applied", reason=""),
        state("bike-2", config_version=0, config_status="rejected",
              reason="setting interval_ms must be an int in 100..3600000"),
        state("bike-3", config_version=0, config_status="none", reason=""),
    ])
    drift = {d["device"]: d for d in client.get("/api/v1/drift", headers=ADMIN).json()}
    assert set(drift) == {"bike-2", "bike-3", "bike-4"}  # bike-1 applied it
    assert (drift["bike-2"]["status"], drift["bike-2"]["reason"]) == (
        "rejected", "setting interval_ms must be an int in 100..3600000")
    assert drift["bike-3"]["status"] == "not yet applied"
    assert (drift["bike-4"]["status"], drift["bike-4"]["last_heard_ms"]) == ("offline", None)
    clock.now_s += 31  # three heartbeats of 10 s without a word
    drift = {d["device"]: d for d in client.get("/api/v1/drift", headers=ADMIN).json()}
    assert drift["bike-3"]["status"] == "offline" and drift["bike-3"]["last_heard_ms"] == T0
