"""The audit log: every change the API makes (who, role, what, small before/after, when),
every write refused to a known caller with its reason, none for callers without a token,
never a secret; read newest first, paged and filtered, by ops and admin only."""

from __future__ import annotations

import json
from typing import Any

from cloudkit import ADMIN, ADMIN_TOKEN, GatewaySim, api_token, b64, bearer, record_key, signed
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.services import audit


def _log(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/audit", params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()
    return entries


def test_every_change_is_audited_with_who_and_what(
    client: TestClient, app: FastAPI, gateway: GatewaySim
) -> None:
    ops = api_token(app, "ops", "alice")
    key = record_key()
    client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike",
                                         "record_key": b64(key)}, headers=bearer(ops))
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 700}},
               headers=bearer(ops))
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 900}},
               headers=bearer(ops))
    assert gateway.push([signed("bike-1", 1, key)]).status_code == 200
    client.post("/api/v1/gateways", json={"id": "gw-2", "public_key": b64(b"k" * 32)},
                headers=ADMIN)
    client.put("/api/v1/devices/bike-1/gateway", json={"gateway": "gw-2"}, headers=bearer(ops))
    client.put("/api/v1/devices/bike-1/consent", json={"tier": "usage"}, headers=ADMIN)
    entries = _log(client)
    assert [e["action"] for e in entries] == [
        "consent.narrow", "device.assign", "gateway.register", "config.put", "config.put",
        "device.create", "token.create", "gateway.register"]
    assert all(e["outcome"] == "ok" and e["at_ms"] > 0 for e in entries)
    narrow, assign, _, put2, put1, create, _, _ = entries
    assert (create["actor"], create["role"], create["target"]) == ("alice", "ops", "device:bike-1")
    assert create["after"] == {"product": "bike", "record_key_registered": True}
    assert put1["before"] is None and put1["after"]["settings"] == {"interval_ms": 700}
    assert put2["before"]["settings"] == {"interval_ms": 700}
    assert put2["after"] == {"version": 2, "settings": {"interval_ms": 900}}
    assert assign["before"] == {"gateway": "gw-1"} and assign["after"] == {"gateway": "gw-2"}
    assert (narrow["actor"], narrow["after"]["tier"]) == ("bootstrap admin", "usage")
    assert put1["token_id"] is not None and narrow["token_id"] is None
    # never a secret: no record key, no gateway token, no API token
    text = json.dumps(entries)
    assert b64(key) not in text and key.hex() not in text
    assert gateway.token not in text and ops not in text and ADMIN_TOKEN not in text


def test_refused_writes_of_known_callers_are_audited_unknown_ones_are_not(
    client: TestClient, app: FastAPI
) -> None:
    analyst = api_token(app, "analyst", "bob")
    ops = api_token(app, "ops", "carol")
    # wrong role: 403, audited
    r = client.put("/api/v1/devices/bike-1/config", json={"settings": {}}, headers=bearer(analyst))
    assert r.status_code == 403
    # unknown device: 404; bad settings: 422; a body that fails its shape: 422 - all audited
    client.put("/api/v1/devices/bike-9/config", json={"settings": {"interval_ms": 700}},
               headers=bearer(ops))
    client.put("/api/v1/devices/bike-9/config", json={"settings": {"nope": 1}},
               headers=bearer(ops))
    client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike",
                                         "record_key": "not base64!"}, headers=bearer(ops))
    # no token, a wrong token: 401, never audited (nobody could fill the table)
    for headers in ({}, bearer("flt_forged"), bearer("x" * 40)):
        for _ in range(3):
            assert client.put("/api/v1/devices/bike-1/config", json={"settings": {}},
                              headers=headers).status_code == 401
    # a read refused is no write: not audited
    assert client.get("/api/v1/tokens", headers=bearer(ops)).status_code == 403
    entries = [e for e in _log(client) if e["outcome"] == "refused"]
    assert [(e["actor"], e["outcome"], e["reason"][:3]) for e in entries] == [
        ("carol", "refused", "422"), ("carol", "refused", "422"), ("carol", "refused", "404"),
        ("bob", "refused", "403")]
    forbidden = entries[-1]
    assert forbidden["action"] == "config.put" and forbidden["target"] == "device:bike-1"
    assert "role analyst may not" in forbidden["reason"]
    assert "record_key" in entries[0]["reason"] and "not base64!" not in entries[0]["reason"]


def test_audit_pages_filters_and_roles(client: TestClient, app: FastAPI) -> None:
    for n in range(5):
        client.post("/api/v1/tokens", json={"name": f"t{n}", "role": "analyst"}, headers=ADMIN)
    client.delete("/api/v1/tokens/2", headers=ADMIN)
    first = _log(client, limit=2)
    assert [e["action"] for e in first] == ["token.revoke", "token.create"]
    rest = _log(client, limit=10, before=first[-1]["id"])
    assert len(rest) == 4 and all(e["id"] < first[-1]["id"] for e in rest)
    assert [e["target"] for e in _log(client, target="token:2")] == ["token:2", "token:2"]
    assert len(_log(client, action="token.create")) == 5
    assert _log(client, actor="nobody") == []
    created = _log(client, action="token.create")[0]
    assert "token" not in created["after"] and created["after"]["role"] == "analyst"
    for role, code in (("ops", 200), ("technician", 403), ("analyst", 403), ("customer", 403)):
        assert client.get("/api/v1/audit", headers=bearer(api_token(app, role))).status_code == code


def test_values_are_bounded_and_scrubbed() -> None:
    text = audit.bounded({"settings": {"x": "y" * 10_000}, "token": "flt_secret",
                          "nested": [{"record_key": "k", "ok": 1}]})
    assert text is not None and len(text) <= audit.MAX_VALUE
    assert "flt_secret" not in text and '"record_key"' not in text and text.endswith("(truncated)")
