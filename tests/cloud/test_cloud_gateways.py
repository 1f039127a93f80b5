from __future__ import annotations

import base64

import pytest
from cloudkit import ADMIN, GatewaySim, b64_public, rec, register
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient


def test_register_returns_token_once_and_it_authenticates(client: TestClient) -> None:
    key = Ed25519PrivateKey.generate()
    r = client.post("/api/v1/gateways", json={"id": "gw-1", "public_key": b64_public(key)}, headers=ADMIN)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] == "gw-1" and len(body["token"]) >= 32
    feed = client.get("/api/v1/gateway/configs", headers={"Authorization": f"Bearer {body['token']}"})
    assert feed.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}])
def test_admin_routes_need_the_admin_token(client: TestClient, headers: dict[str, str]) -> None:
    key = Ed25519PrivateKey.generate()
    r = client.post("/api/v1/gateways", json={"id": "gw-1", "public_key": b64_public(key)}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/devices", headers=headers).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"id": "gw-1", "public_key": "not base64!"},
        {"id": "gw-1", "public_key": base64.b64encode(b"x" * 31).decode()},
        {"id": "gw/1", "public_key": base64.b64encode(b"x" * 32).decode()},
        {"id": "-gw", "public_key": base64.b64encode(b"x" * 32).decode()},
        {"id": "gw-1"},
        {"id": "gw-1", "public_key": base64.b64encode(b"x" * 32).decode(), "extra": 1},
    ],
)
def test_register_validates(client: TestClient, body: dict[str, object]) -> None:
    assert client.post("/api/v1/gateways", json=body, headers=ADMIN).status_code == 422


def test_reregister_same_key_rotates_token_other_key_conflicts(client: TestClient) -> None:
    key = Ed25519PrivateKey.generate()
    first = register(client, "gw-1", key)
    second = register(client, "gw-1", key)
    assert first != second

    def feed(token: str) -> int:
        return client.get(
            "/api/v1/gateway/configs", headers={"Authorization": f"Bearer {token}"}
        ).status_code

    assert feed(second) == 200
    assert feed(first) == 401
    other = Ed25519PrivateKey.generate()
    r = client.post("/api/v1/gateways", json={"id": "gw-1", "public_key": b64_public(other)}, headers=ADMIN)
    assert r.status_code == 409
    assert "different public key" in r.json()["detail"]
    assert feed(second) == 200


def test_ingest_needs_gateway_token(client: TestClient, gateway: GatewaySim) -> None:
    sealed = gateway.seal([rec("bike-1", 1)])
    assert gateway.post(sealed, Authorization="").status_code == 401
    assert gateway.post(sealed, Authorization="Bearer wrong").status_code == 401
    # the admin token is not a gateway token: a valid token of another role
    assert gateway.post(sealed, **ADMIN).status_code == 403


def test_ingest_header_must_name_the_tokens_gateway(client: TestClient, gateway: GatewaySim) -> None:
    key2 = Ed25519PrivateKey.generate()
    register(client, "gw-2", key2)
    sealed = gateway.seal([rec("bike-1", 1)])
    r = gateway.post(sealed, **{"X-Fleetloop-Gateway": "gw-2"})
    assert r.status_code == 403
    headers = sealed.headers(gateway.token)
    del headers["X-Fleetloop-Gateway"]
    assert client.post("/api/v1/ingest", content=sealed.body, headers=headers).status_code == 403
    assert gateway.post(sealed).status_code == 200
