from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cloudkit import ADMIN, T0, Clock, GatewaySim, counts, raw_public, rec, register, state
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.main import create_app
from cloud.settings import Settings
from protocol import config as config_codec


def add_device(client: TestClient, device_id: str = "bike-1") -> None:
    r = client.post("/api/v1/devices", json={"id": device_id, "product": "bike"}, headers=ADMIN)
    assert r.status_code == 201


def put(client: TestClient, settings: object, device_id: str = "bike-1") -> tuple[int, dict]:
    r = client.put(f"/api/v1/devices/{device_id}/config", json={"settings": settings}, headers=ADMIN)
    return r.status_code, r.json()


@pytest.mark.parametrize(
    "values,reason",
    [
        ({"interval_ms": 1}, "interval_ms must be an int in 100..3600000"),
        ({"interval_ms": 500.0}, "interval_ms must be an int"),
        ({"interval_ms": True}, "interval_ms must be an int"),
        ({"interval_ms": "500"}, "interval_ms must be an int"),
        ({"colour": 1}, "unknown setting colour"),
        ({"max_inflight": 65}, "max_inflight"),
    ],
)
def test_put_validates_with_protocol_rules(
    app: FastAPI, client: TestClient, values: dict, reason: str
) -> None:
    add_device(client)
    status, body = put(client, values)
    assert status == 422
    assert reason in body["detail"]
    assert counts(app)["configs"] == 0
    # settings are checked before the device is looked up
    assert put(client, values, "unknown-1")[0] == 422


def test_put_body_shape(client: TestClient) -> None:
    add_device(client)
    for body in ({}, {"settings": [1]}, {"settings": {}, "x": 1}):
        r = client.put("/api/v1/devices/bike-1/config", json=body, headers=ADMIN)
        assert r.status_code == 422


def test_versions_increase_and_envelopes_verify(
    client: TestClient, clock: Clock, config_key: Ed25519PrivateKey
) -> None:
    add_device(client)
    add_device(client, "bike-2")
    for version, interval in enumerate((500, 700, 900), start=1):
        clock.now_s += 1
        status, body = put(client, {"interval_ms": interval})
        assert status == 200
        assert body == {"device": "bike-1", "version": version, "settings": {"interval_ms": interval}}
    assert put(client, {}, "bike-2")[1]["version"] == 1  # versions are per device

    cfg = client.get("/api/v1/devices/bike-1/config", headers=ADMIN).json()
    assert cfg == {"desired": {"version": 3, "settings": {"interval_ms": 900}}, "reported": None}

    token = gateway_token(client)
    feed = client.get("/api/v1/gateway/configs", headers=token).json()
    envelopes = {c["device"]: c for c in feed["configs"]}
    body = config_codec.open_envelope(envelopes["bike-1"]["envelope"].encode(), raw_public(config_key))
    assert body == {"device": "bike-1", "version": 3, "issued": int(clock.now_s * 1000),
                    "settings": {"interval_ms": 900}}
    other = raw_public(Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="bad signature"):
        config_codec.open_envelope(envelopes["bike-1"]["envelope"].encode(), other)


def gateway_token(client: TestClient) -> dict[str, str]:
    from cloudkit import register

    key = Ed25519PrivateKey.generate()
    return {"Authorization": f"Bearer {register(client, 'gw-cfg', key)}"}


def test_gateway_feed_by_revision(client: TestClient) -> None:
    for device_id in ("bike-1", "bike-2", "bike-3"):
        add_device(client, device_id)
    token = gateway_token(client)

    def feed(after: int) -> dict:
        r = client.get("/api/v1/gateway/configs", params={"after": after}, headers=token)
        assert r.status_code == 200
        return r.json()

    assert feed(0) == {"revision": 0, "configs": []}
    put(client, {"interval_ms": 500}, "bike-1")  # revision 1
    put(client, {"interval_ms": 600}, "bike-2")  # revision 2
    put(client, {"interval_ms": 700}, "bike-1")  # revision 3: replaces bike-1's v1
    f = feed(0)
    assert f["revision"] == 3
    assert [(c["device"], c["version"]) for c in f["configs"]] == [("bike-2", 1), ("bike-1", 2)]
    f2 = feed(2)
    assert [(c["device"], c["version"]) for c in f2["configs"]] == [("bike-1", 2)]
    assert feed(3) == {"revision": 3, "configs": []}
    put(client, {"keepalive_s": 30}, "bike-3")
    assert [(c["device"], c["version"]) for c in feed(3)["configs"]] == [("bike-3", 1)]
    # an envelope is exactly what protocol.config.seal produced
    env = json.loads(feed(3)["configs"][0]["envelope"])
    assert set(env) == {"v", "body", "sig"}


def test_gateway_feed_needs_a_gateway_token(client: TestClient) -> None:
    assert client.get("/api/v1/gateway/configs").status_code == 401
    assert client.get("/api/v1/gateway/configs", headers=ADMIN).status_code == 403
    assert client.get("/api/v1/gateway/configs", params={"after": -1},
                      headers=gateway_token(client)).status_code == 422


def test_reported_config_comes_from_state_messages(client: TestClient, gateway: GatewaySim) -> None:
    add_device(client)
    put(client, {"interval_ms": 500})
    gateway.push([rec("bike-1", 1)], [state("bike-1", t=T0 + 5, config_version=1,
                                            config_status="applied", reason="")])
    cfg = client.get("/api/v1/devices/bike-1/config", headers=ADMIN).json()
    assert cfg == {
        "desired": {"version": 1, "settings": {"interval_ms": 500}},
        "reported": {"config_version": 1, "config_status": "applied", "reason": ""},
    }


DEV_ADMIN = {"Authorization": "Bearer dev-admin-token"}


def test_missing_config_key_is_503_and_stores_nothing(tmp_path: Path) -> None:
    app = create_app(Settings.load(home=tmp_path, dev=True, env={}))
    with TestClient(app) as client:
        client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=DEV_ADMIN)
        r = client.put("/api/v1/devices/bike-1/config", json={"settings": {}}, headers=DEV_ADMIN)
        assert r.status_code == 503
        assert "config.key.pem" in r.json()["detail"]
        assert counts(app)["configs"] == 0


def test_config_key_that_is_not_ed25519_is_503(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_path = tmp_path / "ec.pem"
    key_path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    app = create_app(Settings.load(home=tmp_path, dev=True, config_key_path=key_path, env={}))
    with TestClient(app) as client:
        client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=DEV_ADMIN)
        r = client.put("/api/v1/devices/bike-1/config", json={"settings": {}}, headers=DEV_ADMIN)
        assert r.status_code == 503 and "not Ed25519" in r.json()["detail"]


def test_a_gateway_gets_only_the_configs_of_its_own_devices(client: TestClient, gateway: GatewaySim) -> None:
    other_key = Ed25519PrivateKey.generate()
    other = GatewaySim(client, "gw-2", other_key, register(client, "gw-2", other_key))
    assert gateway.push([rec("bike-1", 1)]).status_code == 200  # bike-1 lives behind gw-1
    assert other.push([rec("bike-2", 1)]).status_code == 200  # bike-2 behind gw-2
    add_device(client, "bike-new")  # registered, not seen anywhere yet
    for device_id in ("bike-1", "bike-2", "bike-new"):
        put(client, {"interval_ms": 500}, device_id)

    def devices_for(sim: GatewaySim) -> list[str]:
        r = client.get("/api/v1/gateway/configs", params={"after": 0},
                       headers={"Authorization": f"Bearer {sim.token}"})
        assert r.status_code == 200
        return sorted(c["device"] for c in r.json()["configs"])

    assert devices_for(gateway) == ["bike-1", "bike-new"]
    assert devices_for(other) == ["bike-2", "bike-new"]


def test_the_largest_valid_config_fits_the_downlink(client: TestClient) -> None:
    # The longest device id and every setting at its widest: still signed (the limit is
    # protocol.bounds.MAX_DOWNLINK_BYTES, which every device can receive).
    device_id = "b" * 64
    add_device(client, device_id)
    widest = {name: high for name, (_, high) in config_codec.SETTINGS.items()}
    status, body = put(client, widest, device_id)
    assert status == 200, body


def test_a_config_larger_than_the_downlink_is_refused(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_device(client)
    monkeypatch.setattr(config_codec, "MAX_ENVELOPE_BYTES", 200)
    status, body = put(client, {"interval_ms": 500})
    assert status == 422
    assert re.search(r"too large \(\d+ > 200\)", body["detail"]), body
    assert counts(app)["configs"] == 0
    monkeypatch.undo()
    assert put(client, {"interval_ms": 500})[1]["version"] == 1  # nothing was used up
