"""schemathesis against the app's own OpenAPI document, bounded: for every operation, inputs
generated from its schema (fitting it and not fitting it) never get a 5xx, every answer
conforms to the document (status declared, body as declared, content type), and every 4xx
says what is wrong. A valid admin token goes with every call, the gateway's token with the
gateway's endpoints. Also by hand: OPTIONS and 405 list exactly a path's methods, and an
oversized body is refused before it is read."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from cloudkit import ADMIN, GatewaySim, api_token, bearer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks

from cloud.http import MAX_JSON_BYTES
from cloud.routers.revocations import CRL_TYPE
from cloud.services.bundles import CONTENT_TYPE as BUNDLE_TYPE
from protocol.batch import CONTENT_TYPE, GAP_CONTENT_TYPE

EXAMPLES = 12  # per operation and mode: the whole run stays well under a minute
CHECKS = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@schemathesis.serializer(CONTENT_TYPE, GAP_CONTENT_TYPE, CRL_TYPE, BUNDLE_TYPE)
def _raw_body(ctx: Any, value: Any) -> dict[str, Any]:
    """The ingest bodies (signed, compressed) and the CRL (DER) are raw bytes: sent as
    generated."""
    if isinstance(value, bytes):
        return {"data": value}
    if isinstance(value, str):
        return {"data": value.encode()}
    return {"data": json.dumps(value, default=str).encode()}


def _no_5xx_and_clear_4xx(response: Any) -> None:
    assert response.status_code < 500, response.text
    if 400 <= response.status_code < 500:
        detail = response.json().get("detail")
        assert detail, f"{response.status_code} without a reason: {response.text}"


def _short_hold(case: Any) -> None:
    """A long-poll asked to wait a valid while (up to 60 s) would hold the request that long:
    a valid wait becomes at most 0.2 s here (tests/cloud/test_cloud_watch.py tests the hold
    itself); a wait that is not a valid number stays as generated, to be refused."""
    if case.operation.path != "/api/v1/gateway/watch" or not case.query:
        return
    wait = case.query.get("wait")
    try:
        valid = wait is not None and not isinstance(wait, bool) and float(wait) >= 0.2
    except (TypeError, ValueError):
        valid = False
    if valid and float(wait) <= 60:
        case.query["wait"] = 0.2


def _runner(operation: Any, headers: dict[str, str], mode: GenerationMode) -> Any:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        # our Authorization header, unless a negative case generated one on purpose
        given_headers = dict(case.headers or {})
        case.headers = ({**headers, **given_headers} if mode.is_negative
                        else {**given_headers, **headers})
        _short_hold(case)
        response = case.call_and_validate(checks=CHECKS)
        _no_5xx_and_clear_4xx(response)

    return run


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_conform(
    app: FastAPI, client: TestClient, gateway: GatewaySim, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    spec = app.openapi()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        roles = spec["paths"][operation.path][operation.method.lower()].get("x-roles", [])
        if "admin" in roles or not roles:
            headers = dict(ADMIN)
        elif roles == ["gateway"]:
            headers = bearer(gateway.token)
        else:  # the customer's own account
            headers = bearer(api_token(app, "customer", customer="acme"))

        run = _runner(operation, headers, mode)
        try:
            run()
        except Unsatisfiable:  # nothing to get wrong (no input) in negative mode
            assert mode.is_negative, operation.path
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_options_and_405_list_exactly_the_paths_methods(client: TestClient, app: FastAPI) -> None:
    spec = app.openapi()
    for path, ops in spec["paths"].items():
        url = path.replace("{device_id}", "bike-1").replace("{gateway_id}", "gw-1").replace(
            "{token_id}", "1")
        declared = {m.upper() for m in ops}
        r = client.options(url)
        assert r.status_code == 204, (path, r.status_code)
        allow = {m.strip() for m in r.headers["allow"].split(",")}
        assert allow - {"HEAD", "OPTIONS"} == declared, (path, allow, declared)
        if "PATCH" not in declared:
            r = client.patch(url, headers=ADMIN)
            assert r.status_code == 405, (path, r.status_code)
            assert {m.strip() for m in r.headers["allow"].split(",")} == allow
    assert client.options("/nowhere").status_code == 404


@pytest.mark.parametrize("url", ["/api/v1/audit?actor=ad%00min", "/api/v1/devices/bike%00-1",
                                 "/devices/bike-1?from_ms=0&to_ms=1%00"])
def test_a_nul_in_the_path_or_query_is_refused_on_either_backend(
        client: TestClient, url: str) -> None:
    """PostgreSQL's text cannot hold a NUL (the fuzzer found the audit filter failing there):
    refused with a reason before any route sees it, on SQLite the same."""
    r = client.get(url, headers=ADMIN)
    assert r.status_code == 422 and "NUL" in r.json()["detail"]
    assert client.get("/api/v1/audit?actor=admin", headers=ADMIN).status_code == 200


def test_oversized_body_is_refused_and_nothing_is_stored(client: TestClient) -> None:
    big = {"id": "bike-1", "product": "bike", "pad": "x" * MAX_JSON_BYTES}
    r = client.post("/api/v1/devices", json=big, headers=ADMIN)
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks() -> Any:  # no Content-Length: refused while reading
        yield b'{"settings": {"pad": "'
        for _ in range(MAX_JSON_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}}'

    r = client.put("/api/v1/devices/bike-1/config", content=chunks(),
                   headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert client.get("/api/v1/devices", headers=ADMIN).json() == []


def test_unknown_fields_and_wrong_types_are_refused_with_where(client: TestClient) -> None:
    for body in ({"id": "bike-1", "product": "bike", "colour": "red"},
                 {"id": 7, "product": "bike"},
                 {"id": "bike-1", "product": ["bike"]}):
        r = client.post("/api/v1/devices", json=body, headers=ADMIN)
        assert r.status_code == 422
        issues = r.json()["detail"]
        assert issues and all(i["loc"][0] == "body" and i["msg"] for i in issues)
    assert client.get("/api/v1/devices", headers=ADMIN).json() == []
