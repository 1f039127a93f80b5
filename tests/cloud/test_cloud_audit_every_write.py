"""Every write operation of the OpenAPI document leaves an audit entry when it succeeds: one
row per operation (POST/PUT/DELETE; the gateway's ingest, which stores data rather than
changing what operators manage, is the only exception), a table that must cover the document,
so a new write without its audit fails here. Each row sets up what the write needs, makes it
with a token of a role the write accepts, and finds the entry (who, role, action, target)
that the operation declares in `x-audit-action`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cloudkit import ADMIN, T0, GatewaySim, api_token, b64, bearer, record_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from updatekit import BUNDLE, full, write_release_pub

WRITES = ("post", "put", "delete", "patch")
NOT_AUDITED = {("POST", "/api/v1/ingest"), ("POST", "/api/v1/ingest/gap")}  # the data path


def crl_der(number: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test device CA")])
    now = dt.datetime.fromtimestamp(T0 / 1000, dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name)
           .last_update(now).next_update(now + dt.timedelta(days=30))
           .add_extension(x509.CRLNumber(number), critical=False)
           .sign(key, hashes.SHA256()))
    return crl.public_bytes(serialization.Encoding.DER)


@dataclass
class World:
    client: TestClient
    app: FastAPI
    tokens: dict[str, str]

    def call(self, role: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        r = self.client.request(method, url, headers={
            **bearer(self.tokens[role]), **kwargs.pop("headers", {})}, **kwargs)
        assert r.is_success, (method, url, r.status_code, r.text)
        return r

    def device(self, device_id: str = "bike-1", customer: str | None = None) -> None:
        body: dict[str, Any] = {"id": device_id, "product": "bike",
                                "record_key": b64(record_key())}
        if customer is not None:
            body["customer"] = customer
        self.call("ops", "POST", "/api/v1/devices", json=body)

    def customer(self, customer_id: str = "acme") -> None:
        self.call("ops", "POST", "/api/v1/customers", json={"id": customer_id, "name": "Acme"})

    def cohort(self) -> None:
        self.call("ops", "PUT", "/api/v1/cohorts/r2", json={"rule": {"product": "bike"}})

    def bundle(self, rollout: str | None = None) -> None:
        """A release key, the bike's 0.2.0 bundle, and a rollout of it to bike-1 (then
        `rollout`: a control applied to it)."""
        key = Ed25519PrivateKey.generate()
        write_release_pub(self.app.state.settings.home, key)
        self.call("ops", "POST", "/api/v1/bundles", content=full(key), headers=BUNDLE)
        if rollout is not None:
            self.call("ops", "POST", "/api/v1/rollouts",
                      json={"bundle": "bike-0.2.0", "devices": ["bike-1"]})
        if rollout:
            self.call("ops", "POST", f"/api/v1/rollouts/r-1/{rollout}")


RELEASE = Ed25519PrivateKey.generate()  # a release key for the bundle uploads
# start_ms: these devices have sent no record, so the window's start is given
POLICY = {"name": "coach", "product": "bike", "devices": ["bike-1", "bike-2"],
          "change": {"coach_mode": 1}, "outcome": {"kpi": "rides_per_week"},
          "start_ms": 1_780_000_000_000}
# (method, path) -> (role, set-up, the write: (method, url, kwargs), target)
Row = tuple[str, Callable[[World], None], tuple[str, str, dict[str, Any]], str]
TABLE: dict[tuple[str, str], Row] = {
    ("POST", "/api/v1/cohorts"): (
        "ops", lambda w: None,
        ("POST", "/api/v1/cohorts", {"json": {"name": "c1", "rule": {"product": "bike"}}}),
        "cohort:c1"),
    ("PUT", "/api/v1/cohorts/{name}"): (
        "ops", lambda w: None,
        ("PUT", "/api/v1/cohorts/c1", {"json": {"devices": ["bike-1"]}}), "cohort:c1"),
    ("DELETE", "/api/v1/cohorts/{name}"): (
        "ops", World.cohort, ("DELETE", "/api/v1/cohorts/r2", {}), "cohort:r2"),
    ("POST", "/api/v1/bundles"): (
        "ops", lambda w: write_release_pub(w.app.state.settings.home, RELEASE),
        ("POST", "/api/v1/bundles", {"content": full(RELEASE), "headers": BUNDLE}),
        "bundle:bike-0.2.0"),
    ("POST", "/api/v1/rollouts"): (
        "ops", lambda w: w.bundle(),
        ("POST", "/api/v1/rollouts", {"json": {"bundle": "bike-0.2.0", "devices": ["bike-1"]}}),
        "rollout:r-1"),
    ("POST", "/api/v1/rollouts/{rollout_id}/pause"): (
        "ops", lambda w: w.bundle(""), ("POST", "/api/v1/rollouts/r-1/pause", {}), "rollout:r-1"),
    ("POST", "/api/v1/rollouts/{rollout_id}/resume"): (
        "ops", lambda w: w.bundle("pause"), ("POST", "/api/v1/rollouts/r-1/resume", {}),
        "rollout:r-1"),
    ("POST", "/api/v1/rollouts/{rollout_id}/abort"): (
        "ops", lambda w: w.bundle(""), ("POST", "/api/v1/rollouts/r-1/abort", {}), "rollout:r-1"),
    ("POST", "/api/v1/customers"): (
        "ops", lambda w: None,
        ("POST", "/api/v1/customers", {"json": {"id": "globex", "name": "Globex"}}),
        "customer:globex"),
    ("POST", "/api/v1/devices"): (
        "factory", lambda w: None,
        ("POST", "/api/v1/devices", {"json": {"id": "bike-9", "product": "bike",
                                              "record_key": b64(record_key(9))}}),
        "device:bike-9"),
    ("PUT", "/api/v1/devices/{device_id}/config"): (
        "ops", lambda w: None,
        ("PUT", "/api/v1/devices/bike-1/config", {"json": {"settings": {"interval_ms": 700}}}),
        "device:bike-1"),
    ("PUT", "/api/v1/devices/{device_id}/consent"): (
        "customer", lambda w: None,
        ("PUT", "/api/v1/devices/bike-1/consent", {"json": {"tier": "usage"}}),
        "device:bike-1"),
    ("PUT", "/api/v1/devices/{device_id}/customer"): (
        "ops", lambda w: w.customer("globex"),
        ("PUT", "/api/v1/devices/bike-1/customer", {"json": {"customer": "globex"}}),
        "device:bike-1"),
    ("POST", "/api/v1/devices/{device_id}/decommission"): (
        "ops", lambda w: None,
        ("POST", "/api/v1/devices/bike-1/decommission", {"json": {"reason": "returned"}}),
        "device:bike-1"),
    ("PUT", "/api/v1/devices/{device_id}/gateway"): (
        "technician",
        lambda w: w.call("admin", "POST", "/api/v1/gateways",
                         json={"id": "gw-2", "public_key": b64(b"k" * 32)}),
        ("PUT", "/api/v1/devices/bike-1/gateway", {"json": {"gateway": "gw-2"}}),
        "device:bike-1"),
    ("POST", "/api/v1/devices/{device_id}/revoke"): (
        "ops", lambda w: None,
        ("POST", "/api/v1/devices/bike-1/revoke", {"json": {"reason": "stolen"}}),
        "device:bike-1"),
    ("POST", "/api/v1/gateways"): (
        "ops", lambda w: None,
        ("POST", "/api/v1/gateways", {"json": {"id": "gw-3", "public_key": b64(b"q" * 32)}}),
        "gateway:gw-3"),
    ("POST", "/api/v1/me/cancel"): (
        "customer", lambda w: None, ("POST", "/api/v1/me/cancel", {}), "customer:acme"),
    ("PUT", "/api/v1/profiles/{kind}/{scope}"): (
        "ops", lambda w: None,
        ("PUT", "/api/v1/profiles/product/bike", {"json": {"settings": {"interval_ms": 900}}}),
        "profile:product/bike"),
    ("POST", "/api/v1/profiles/{kind}/{scope}/rollback"): (
        "ops",
        lambda w: [w.call("ops", "PUT", "/api/v1/profiles/cohort/r2",
                          json={"settings": {"interval_ms": n}}) for n in (800, 900)]
        and None,
        ("POST", "/api/v1/profiles/cohort/r2/rollback?version=1", {}), "profile:cohort/r2"),
    ("PUT", "/api/v1/revocations/crl"): (
        "factory", lambda w: None,
        ("PUT", "/api/v1/revocations/crl", {"content": crl_der(7),
                                            "headers": {"Content-Type": "application/pkix-crl"}}),
        "crl:7"),
    ("PUT", "/api/v1/aggregation/{product}"): (
        "ops", lambda w: None,
        ("PUT", "/api/v1/aggregation/bike", {"json": {"mode": "60"}}), "product:bike"),
    ("POST", "/api/v1/policies"): (
        "ops", lambda w: w.device("bike-2"),
        ("POST", "/api/v1/policies", {"json": POLICY}), "policy:1"),
    ("POST", "/api/v1/policies/{policy_id}/stop"): (
        "ops", lambda w: [w.device("bike-2"), w.call("admin", "POST", "/api/v1/policies",
                                                     json=POLICY)] and None,
        ("POST", "/api/v1/policies/1/stop", {}), "policy:1"),
    ("POST", "/api/v1/tokens"): (
        "admin", lambda w: None,
        ("POST", "/api/v1/tokens", {"json": {"name": "new-ops", "role": "ops"}}), "token:"),
    ("DELETE", "/api/v1/tokens/{token_id}"): (
        "admin", lambda w: None, ("DELETE", "/api/v1/tokens/{analyst_id}", {}), "token:"),
}


def _writes(app: FastAPI) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), path): op for path, ops in app.openapi()["paths"].items()
            for m, op in ops.items() if m in WRITES}


def test_the_table_covers_every_write_of_the_document(app: FastAPI) -> None:
    writes = _writes(app)
    assert set(writes) - NOT_AUDITED == set(TABLE), "a write without an audit row here"
    for key, op in writes.items():
        if key not in NOT_AUDITED:
            assert op.get("x-audit-action"), f"{key} names no x-audit-action"


@pytest.mark.parametrize("key", sorted(TABLE), ids=lambda k: f"{k[0]} {k[1]}")
def test_every_successful_write_leaves_an_audit_entry(
    key: tuple[str, str], client: TestClient, app: FastAPI, gateway: GatewaySim
) -> None:
    roles = ("ops", "technician", "factory", "admin", "analyst")
    tokens = {role: api_token(app, role, f"{role}-person") for role in roles}
    tokens["customer"] = api_token(app, "customer", "acme-owner", customer="acme")
    world = World(client, app, tokens)
    world.device("bike-1", customer="acme")
    world.cohort()
    role, setup, (method, url, kwargs), target = TABLE[key]
    setup(world)
    if "{analyst_id}" in url:
        listed = client.get("/api/v1/tokens", headers=ADMIN).json()
        url = url.replace("{analyst_id}", str(
            next(t["id"] for t in listed if t["name"] == "analyst-person")))
    last = client.get("/api/v1/audit", params={"limit": 1}, headers=ADMIN).json()[0]["id"]

    world.call(role, method, url, **kwargs)

    entries = client.get("/api/v1/audit", headers=ADMIN).json()
    new = [e for e in entries if e["id"] > last]
    action = _writes(app)[key]["x-audit-action"]
    mine = [e for e in new if e["action"] == action]
    assert mine, (key, [e["action"] for e in new])
    entry = mine[-1]
    assert entry["outcome"] == "ok" and entry["at_ms"] > 0
    assert entry["target"].startswith(target), entry
    assert (entry["actor"], entry["role"]) == (
        {"customer": "acme-owner"}.get(role, f"{role}-person"), role), entry
    for token in tokens.values():  # never a secret
        assert token not in str(entry)


def test_a_refusal_whose_reason_holds_a_nul_is_audited_on_every_backend(
    client: TestClient, app: FastAPI
) -> None:
    """PostgreSQL refuses NUL in text: a refused write naming one (a setting called "\\x00",
    found by the fuzz test) is still answered 422 and audited, the NUL replaced."""
    ops = api_token(app, "ops", "nul-tester")
    client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=ADMIN)
    r = client.put("/api/v1/devices/bike-1/config", json={"settings": {"\x00a": 1}},
                   headers=bearer(ops))
    assert r.status_code == 422, r.text
    (entry,) = client.get("/api/v1/audit", params={"actor": "nul-tester"},
                          headers=ADMIN).json()
    assert entry["outcome"] == "refused" and "\\x00a" in entry["reason"]
    assert "\x00" not in entry["reason"]
