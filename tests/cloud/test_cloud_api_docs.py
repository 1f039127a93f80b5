"""Every endpoint of the contract exists, and every route explains itself in OpenAPI."""

from __future__ import annotations

from fastapi.testclient import TestClient

CONTRACT = {
    ("POST", "/api/v1/gateways"),
    ("POST", "/api/v1/devices"),
    ("GET", "/api/v1/devices"),
    ("GET", "/api/v1/devices/{device_id}/telemetry"),
    ("PUT", "/api/v1/devices/{device_id}/config"),
    ("GET", "/api/v1/devices/{device_id}/config"),
    ("POST", "/api/v1/ingest"),
    ("POST", "/api/v1/ingest/gap"),
    ("GET", "/api/v1/gateways"),
    ("GET", "/api/v1/gateways/{gateway_id}/gaps"),
    ("GET", "/api/v1/devices/{device_id}"),
    ("PUT", "/api/v1/devices/{device_id}/gateway"),
    ("GET", "/api/v1/devices/{device_id}/quarantine"),
    ("GET", "/api/v1/quarantine"),
    ("GET", "/api/v1/gateway/configs"),
    ("PUT", "/api/v1/devices/{device_id}/consent"),
    ("GET", "/api/v1/devices/{device_id}/consent"),
    ("GET", "/api/v1/devices/{device_id}/vitals"),
    ("GET", "/healthz"),
    ("GET", "/"),
}


def test_contract_endpoints_exist_and_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    have = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert have >= CONTRACT, CONTRACT - have
    for path, ops in paths.items():
        for method, op in ops.items():
            assert op.get("description", "").strip(), f"{method.upper()} {path} has no docstring"


def test_openapi_renders(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ingest = spec["paths"]["/api/v1/ingest"]["post"]
    assert "application/vnd.fleetloop.batch+zlib" in ingest["requestBody"]["content"]
    gap = spec["paths"]["/api/v1/ingest/gap"]["post"]
    assert "application/vnd.fleetloop.gap+json" in gap["requestBody"]["content"]
    result = spec["components"]["schemas"]["IngestResult"]["properties"]
    assert set(result) == {"stored", "duplicates", "quarantined", "seq"}


def test_openapi_shows_the_consent_shapes(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["ConsentPut"]["properties"]["tier"]["enum"] == ["essential", "usage", "personal"]
    assert set(schemas["ConsentHistory"]["properties"]) == {
        "device", "tier", "reported", "cap", "cap_version", "audit"}
    assert set(schemas["ConsentAudit"]["properties"]) == {
        "id", "at_ms", "origin", "requested_by", "from_tier", "to_tier", "fields", "rows"}
    assert {"consent", "vitals"} <= set(schemas["DevicePublic"]["properties"])
    assert "consent" in schemas["TelemetryRecord"]["properties"]
