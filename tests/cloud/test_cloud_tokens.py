"""API tokens: made once and shown once, stored hashed, refused when expired or revoked with
the reason, managed by admins only, through the API and the `fleetloop token` CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cloudkit import ADMIN, T0, Clock, api_token, bearer, stored_bytes
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cloud.main import create_app
from cloud.services.tokens import DAY_MS, PREFIX
from cloud.settings import Settings
from fleetloop.cli import app as cli_app


def test_created_token_works_once_shown_and_is_stored_hashed(client: TestClient, app: FastAPI) -> None:
    r = client.post("/api/v1/tokens", json={"name": "alice", "role": "ops"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    issued = r.json()
    token = issued["token"]
    assert token.startswith(PREFIX) and len(token) > 40
    assert issued["expires_ms"] == T0 + 90 * DAY_MS and issued["created_by"] == "bootstrap admin"
    assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
    listed = client.get("/api/v1/tokens", headers=ADMIN).json()
    assert [t["name"] for t in listed] == ["alice"]
    assert "token" not in listed[0] and token not in json.dumps(listed)
    raw = stored_bytes(app)
    assert token.encode() not in raw


def test_expired_and_revoked_tokens_are_refused_with_the_reason(
    client: TestClient, clock: Clock
) -> None:
    r = client.post("/api/v1/tokens", json={"name": "t", "role": "technician",
                                            "expires_days": 1}, headers=ADMIN)
    token, token_id = r.json()["token"], r.json()["id"]
    assert client.get("/api/v1/gateways", headers=bearer(token)).status_code == 200
    clock.now_s += 86_400
    r = client.get("/api/v1/gateways", headers=bearer(token))
    assert r.status_code == 401 and r.json()["detail"] == "token expired"
    clock.now_s -= 86_400
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=ADMIN).status_code == 200
    r = client.get("/api/v1/gateways", headers=bearer(token))
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"
    # revoking again changes nothing; an unknown id is 404
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=ADMIN).json()["revoked_ms"] == T0
    assert client.delete("/api/v1/tokens/999", headers=ADMIN).status_code == 404


def test_only_admins_manage_tokens(client: TestClient, app: FastAPI) -> None:
    ops = api_token(app, "ops")
    assert client.get("/api/v1/tokens", headers=bearer(ops)).status_code == 403
    r = client.post("/api/v1/tokens", json={"name": "x", "role": "admin"}, headers=bearer(ops))
    assert r.status_code == 403
    admin = api_token(app, "admin")
    r = client.post("/api/v1/tokens", json={"name": "x", "role": "analyst"}, headers=bearer(admin))
    assert r.status_code == 201 and r.json()["created_by"] == "admin-token"


def test_bad_token_requests_are_refused_and_nothing_is_stored(client: TestClient) -> None:
    for body in ({"name": "c", "role": "customer"},  # a customer token needs its customer
                 {"name": "o", "role": "ops", "customer": "acme"},
                 {"name": "g", "role": "gateway"},  # gateways get theirs at registration
                 {"name": "", "role": "ops"},
                 {"name": "x", "role": "ops", "expires_days": 0},
                 {"name": "x", "role": "ops", "extra": 1}):
        r = client.post("/api/v1/tokens", json=body, headers=ADMIN)
        assert r.status_code in (400, 422), (body, r.text)
        assert r.json()["detail"]
    # a customer token for an account that does not exist
    r = client.post("/api/v1/tokens", json={"name": "c", "role": "customer", "customer": "acme"},
                    headers=ADMIN)
    assert r.status_code == 422 and "customer acme not found" in r.json()["detail"]
    assert client.get("/api/v1/tokens", headers=ADMIN).json() == []
    assert client.post("/api/v1/customers", json={"id": "acme", "name": "Acme"},
                       headers=ADMIN).status_code == 201
    r = client.post("/api/v1/tokens", json={"name": "c", "role": "customer", "customer": "acme"},
                    headers=ADMIN)
    assert r.status_code == 201 and r.json()["customer"] == "acme"


def test_last_use_is_written_at_most_once_a_minute(client: TestClient, app: FastAPI,
                                                   clock: Clock) -> None:
    token = api_token(app, "analyst")

    def last_used() -> int | None:
        (row,) = client.get("/api/v1/tokens", headers=ADMIN).json()
        value: int | None = row["last_used_ms"]
        return value

    assert last_used() is None
    client.get("/api/v1/devices", headers=bearer(token))
    assert last_used() == T0
    clock.now_s += 30
    client.get("/api/v1/devices", headers=bearer(token))
    assert last_used() == T0
    clock.now_s += 31
    client.get("/api/v1/devices", headers=bearer(token))
    assert last_used() == T0 + 61_000


def test_cli_offline_makes_the_first_admin_token_for_a_server_without_bootstrap(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    out = tmp_path / "root.token"
    r = runner.invoke(cli_app, ["token", "create", "--home", str(home), "--name", "root",
                                "--role", "admin", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    token = out.read_text().strip()
    assert token not in r.output and out.stat().st_mode & 0o777 == 0o600
    created = json.loads(r.output)
    assert created["role"] == "admin" and "token" not in created
    # a server outside dev mode without a bootstrap admin: only the database's tokens
    settings = Settings.load(home=home, dev=False, env={})
    assert settings.admin_token is None
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/tokens", headers=bearer(token)).status_code == 200
        assert client.get("/api/v1/tokens", headers=bearer("dev-admin-token")).status_code == 401
    r = runner.invoke(cli_app, ["token", "create", "--home", str(home), "--name", "cs",
                                "--role", "customer"])
    assert r.exit_code == 2 and "customer id" in r.output
    r = runner.invoke(cli_app, ["token", "revoke", "1", "--home", str(home), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["revoked_ms"] is not None
    r = runner.invoke(cli_app, ["token", "list", "--home", str(home), "--json"])
    (row,) = json.loads(r.output)
    assert row["name"] == "root" and row["revoked_ms"] is not None
    with sqlite3.connect(home / "cloud" / "cloud.db") as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["token.create", "token.revoke"]
