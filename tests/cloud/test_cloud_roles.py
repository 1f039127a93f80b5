"""One table over the whole OpenAPI document: every operation answers 401 without a token,
403 to a valid token of each role it does not accept, and lets each role it accepts past
the door (neither 401 nor 403). One token per role, made with the token service (the
gateway's from its registration)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cloudkit import api_token, bearer
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.access import Role

SKIP = {"/healthz"}  # open by design; /login and /logout are not in the document
ALL_ROLES = [r.value for r in Role]


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    spec = app.openapi()
    return [(method.upper(), path, op) for path, ops in sorted(spec["paths"].items())
            for method, op in sorted(ops.items()) if path not in SKIP]


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x-1", path)


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    headers = {**headers, "X-Fleetloop-Gateway": "gw-1"}
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if method in ("POST", "PUT"):
        kwargs["json"] = {}
    return client.request(method, _url(path), **kwargs).status_code


@pytest.fixture
def tokens(client: TestClient, app: FastAPI, gateway: Any) -> dict[str, str]:
    out = {role: api_token(app, role) for role in ALL_ROLES if role != "gateway"}
    out["gateway"] = gateway.token
    return out


def test_the_table_covers_every_operation_and_role(app: FastAPI) -> None:
    ops = _operations(app)
    assert len(ops) >= 20
    for method, path, op in ops:
        assert op.get("x-roles"), f"{method} {path} declares no roles"
        assert set(op["x-roles"]) <= set(ALL_ROLES)
        assert op.get("security"), f"{method} {path} shows no security scheme"
        assert "Roles:" in op["description"]
        for code in ("401", "403", "503"):
            assert code in op["responses"], f"{method} {path} does not declare {code}"


def test_every_operation_enforces_its_roles(
    client: TestClient, app: FastAPI, tokens: dict[str, str]
) -> None:
    failures = []
    for method, path, op in _operations(app):
        allowed = set(op["x-roles"])
        html = "text/html" in str(op["responses"].get("200", {}))
        code = _call(client, method, path, {})
        want = 303 if html else 401  # a dashboard page sends a browser to /login
        if code != want:
            failures.append(f"{method} {path} without a token: {code}, want {want}")
        for role, token in tokens.items():
            code = _call(client, method, path, bearer(token))
            if role in allowed and code in (401, 403):
                failures.append(f"{method} {path} as {role} (allowed): {code}")
            if role not in allowed and code != 403:
                failures.append(f"{method} {path} as {role} (not allowed): {code}, want 403")
        code = _call(client, method, path, bearer("flt_not-a-token"))
        if code != 401:
            failures.append(f"{method} {path} with an unknown token: {code}, want 401")
    assert not failures, "\n".join(failures)


def test_admin_joins_every_staff_and_customer_endpoint_but_not_the_gateways(app: FastAPI) -> None:
    for method, path, op in _operations(app):
        roles = set(op["x-roles"])
        # the customer's own account (/api/v1/me) is the customer's alone: staff own nothing
        own = path.startswith("/api/v1/me/")
        assert ("admin" in roles) == (roles != {"gateway"} and not own), (method, path, roles)
        assert not own or roles == {"customer"}, (method, path, roles)
