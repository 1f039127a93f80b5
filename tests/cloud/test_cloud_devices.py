from __future__ import annotations

import pytest
from cloudkit import ADMIN, T0, GatewaySim, rec, state
from fastapi.testclient import TestClient


def test_create_device_then_update_product(client: TestClient) -> None:
    r = client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=ADMIN)
    assert r.status_code == 201
    assert r.json() == {
        "id": "bike-1", "product": "bike", "gateway": None, "last_seen_ms": None,
        "incarnation": 0, "last_seq": 0, "records": 0, "quarantined": 0, "conflicts": 0,
        "record_key_registered": False, "last_metrics": {}, "reported": None,
        "consent": None, "vitals": None, "customer": None, "hw_rev": None,
        "cert_fingerprint": None, "enrolled_ms": T0, "status": "active", "status_ms": None,
        "status_reason": None,
    }
    r = client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike2"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["product"] == "bike2"


@pytest.mark.parametrize(
    "body", [{"id": "bike/1", "product": "bike"}, {"id": "bike-1"}, {"id": "", "product": "bike"},
             {"id": "bike-1", "product": "x" * 65}]
)
def test_create_device_validates(client: TestClient, body: dict[str, str]) -> None:
    assert client.post("/api/v1/devices", json=body, headers=ADMIN).status_code == 422


def test_list_devices_with_last_values(client: TestClient, gateway: GatewaySim) -> None:
    client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=ADMIN)
    gateway.push([rec("bike-1", 1, t=1000, power=100, cadence=80),
                  rec("bike-1", 2, t=2000, power=120)])
    # a late, older record does not overwrite newer values
    gateway.push([rec("bike-1", 4, t=4000, power=150), rec("bike-1", 3, t=3000, power=1, hr=90)],
                 [state("bike-1", t=3500, fw="0.1.0", config_status="none")])
    (device,) = client.get("/api/v1/devices", headers=ADMIN).json()
    assert device == {
        "id": "bike-1",
        "product": "bike",
        "gateway": "gw-1",
        "last_seen_ms": 4000,
        "incarnation": 0,
        "last_seq": 4,
        "records": 4,
        "quarantined": 0,
        "conflicts": 0,
        "record_key_registered": False,
        "last_metrics": {"power": 150, "cadence": 80, "hr": 90},
        "reported": {"v": 1, "d": "bike-1", "t": 3500, "fw": "0.1.0", "config_status": "none"},
        "consent": None,  # it never sent a consent record: stored as sent (hr too)
        "vitals": None,
        "customer": None, "hw_rev": None, "cert_fingerprint": None, "enrolled_ms": T0,
        "status": "active", "status_ms": None, "status_reason": None,
    }
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).json() == device


def test_telemetry_pages(client: TestClient, gateway: GatewaySim) -> None:
    gateway.push([rec("bike-1", s, power=s) for s in range(1, 26)])
    gateway.push([rec("mirror-1", 1)])
    seen: list[int] = []
    after = 0
    while True:
        r = client.get("/api/v1/devices/bike-1/telemetry", params={"after_seq": after, "limit": 10},
                       headers=ADMIN)
        assert r.status_code == 200
        page = r.json()
        assert page["device"] == "bike-1"
        if not page["records"]:
            break
        assert len(page["records"]) <= 10
        seen += [x["seq"] for x in page["records"]]
        after = page["records"][-1]["seq"]
    assert seen == list(range(1, 26))
    first = client.get("/api/v1/devices/bike-1/telemetry", headers=ADMIN).json()["records"][0]
    assert first == {"incarnation": 0, "seq": 1, "t": 1_732_345_678_001, "m": {"power": 1}}


@pytest.mark.parametrize("params", [{"limit": 10001}, {"limit": 0}, {"after_seq": -1},
                                    {"after_seq": 2**63}, {"limit": "x"}])
def test_telemetry_paging_limits(client: TestClient, gateway: GatewaySim, params: dict[str, object]) -> None:
    gateway.push([rec("bike-1", 1)])
    r = client.get("/api/v1/devices/bike-1/telemetry", params=params, headers=ADMIN)
    assert r.status_code == 422
    r = client.get("/api/v1/devices/bike-1/telemetry", params={"limit": 10000}, headers=ADMIN)
    assert r.status_code == 200


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/api/v1/devices/nope"), ("GET", "/api/v1/devices/nope/telemetry"),
     ("GET", "/api/v1/devices/nope/config"), ("PUT", "/api/v1/devices/nope/config")],
)
def test_unknown_device_is_404(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, headers=ADMIN, json={"settings": {"interval_ms": 500}})
    assert r.status_code == 404
    assert "not found" in r.json()["detail"]
