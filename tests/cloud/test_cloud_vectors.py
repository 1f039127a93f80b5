"""The cloud against the shared wire vectors (tests/vectors): what the gateway and the device
check, the cloud accepts and produces byte for byte."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from cloudkit import ADMIN, Clock, pem_private
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from cloud.main import create_app
from cloud.settings import Settings

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
TEST_SEED = bytes(range(32))  # the vectors' signing key (tests/vectors/make_vectors.py)


def load(name: str) -> dict:
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"no {path}")
    return json.loads(path.read_text())


def test_vector_batch_chain_is_accepted(client: TestClient) -> None:
    vec = load("batches.json")
    r = client.post("/api/v1/gateways", json={"id": "gw-1", "public_key": vec["public_key"]},
                    headers=ADMIN)
    token = r.json()["token"]
    key = load("records.json")["record_key"]  # every vector device's record key
    for device in {json.loads(x)["d"] for item in vec["chain"]
                   for x in json.loads(item["canonical"])["records"]}:
        r = client.post("/api/v1/devices", json={"id": device, "product": "bike", "record_key": key},
                        headers=ADMIN)
        assert r.status_code == 201, r.text
    results = []
    for i, item in enumerate(vec["chain"], start=1):
        headers = {
            "Content-Type": "application/vnd.fleetloop.batch+zlib",
            "X-Fleetloop-Gateway": "gw-1",
            "X-Fleetloop-Signature": item["signature"],
            "Authorization": f"Bearer {token}",
        }
        body = zlib.compress(item["canonical"].encode())
        r = client.post("/api/v1/ingest", content=body, headers=headers)
        assert r.status_code == 200, r.text
        results.append(r.json())
        assert r.json()["seq"] == i
    canon = [json.loads(item["canonical"]) for item in vec["chain"]]
    assert [x["stored"] for x in results] == [len(c["records"]) for c in canon]
    assert [x["quarantined"] for x in results] == [0, 0]  # every tag and the state's verify
    devices = {d["id"]: d for d in client.get("/api/v1/devices", headers=ADMIN).json()}
    assert set(devices) == {json.loads(r)["d"] for c in canon for r in c["records"]}
    state = json.loads(canon[0]["states"][0])
    assert devices[state["d"]]["reported"] == {k: v for k, v in state.items() if k != "h"}
    assert {d["incarnation"] for d in devices.values()} == {state["i"]}


def test_cloud_seals_the_vector_config_byte_for_byte(tmp_path: Path) -> None:
    vec = load("configs.json")
    (valid,) = [v for v in vec["valid"] if v["body"]["version"] == 3][:1]
    body = valid["body"]
    key_path = tmp_path / "config.key.pem"
    key_path.write_bytes(pem_private(Ed25519PrivateKey.from_private_bytes(TEST_SEED)))
    settings = Settings.load(home=tmp_path, config_key_path=key_path, dev=True, env={})
    app = create_app(settings, clock=Clock(body["issued"] / 1000))
    dev = {"Authorization": "Bearer dev-admin-token"}
    with TestClient(app) as client:
        client.post("/api/v1/devices", json={"id": body["device"], "product": "bike"}, headers=dev)
        for _ in range(body["version"]):
            r = client.put(f"/api/v1/devices/{body['device']}/config",
                           json={"settings": body["settings"]}, headers=dev)
            assert r.status_code == 200
        with app.state.db.connection() as store:
            latest = store.latest_config(body["device"])
    assert latest is not None and latest.envelope == valid["wire"]


def test_cloud_seals_the_vector_consent_config_byte_for_byte(tmp_path: Path) -> None:
    """A narrowing from the account: the next version, the latest settings and `consent`."""
    vec = load("configs.json")
    (valid,) = [v for v in vec["valid"] if "consent" in v["body"]]
    body = valid["body"]
    key_path = tmp_path / "config.key.pem"
    key_path.write_bytes(pem_private(Ed25519PrivateKey.from_private_bytes(TEST_SEED)))
    settings = Settings.load(home=tmp_path, config_key_path=key_path, dev=True, env={})
    app = create_app(settings, clock=Clock(body["issued"] / 1000))
    dev = {"Authorization": "Bearer dev-admin-token"}
    with TestClient(app) as client:
        client.post("/api/v1/devices", json={"id": body["device"], "product": "bike"}, headers=dev)
        for _ in range(body["version"] - 1):
            client.put(f"/api/v1/devices/{body['device']}/config",
                       json={"settings": body["settings"]}, headers=dev)
        r = client.put(f"/api/v1/devices/{body['device']}/consent",
                       json={"tier": body["consent"]}, headers=dev)
        assert r.status_code == 200, r.text
        assert r.json()["cap_version"] == body["version"]
        with app.state.db.connection() as store:
            latest = store.latest_config(body["device"])
    assert latest is not None and latest.envelope == valid["wire"]


def test_vector_consent_records(client: TestClient) -> None:
    """Every valid consent vector is its device's own and stored in its stream; every invalid
    one is quarantined with its reason, and nothing else of the batch stops."""
    from cloudkit import GatewaySim, register

    vec = load("records.json")
    key = Ed25519PrivateKey.generate()
    gateway = GatewaySim(client, "gw-1", key, register(client, "gw-1", key))
    devices = {c["device"] for c in vec["consent"]}
    for device in devices:
        client.post("/api/v1/devices", json={"id": device, "product": "bike",
                                             "record_key": vec["record_key"]}, headers=ADMIN)
    r = gateway.push([c["wire"] for c in vec["consent"]])
    assert r.json()["stored"] == len(vec["consent"]), r.text
    for c in vec["consent"]:
        stored = client.get(f"/api/v1/devices/{c['device']}/telemetry", headers=ADMIN).json()
        assert {"incarnation": c["incarnation"], "seq": c["seq"], "t": c["t"], "m": {},
                "consent": {"cfg": c["cfg"], "origin": c["origin"], "tier": c["tier"]}} in stored[
                    "records"]
    invalid = [x for x in vec["invalid"] if "consent" in x["why"]]
    assert len(invalid) >= 4
    r = gateway.push([x["wire"] for x in invalid])
    assert r.json()["quarantined"] == len(invalid) and r.json()["stored"] == 0
    held = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert len(held) == len(invalid) and all(h["reason"] for h in held)
