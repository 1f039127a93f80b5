"""Record keys: enrolled with the device (POST /api/v1/devices), kept by the cloud, never shown."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from cloudkit import (
    ADMIN,
    GatewaySim,
    b64,
    enrol,
    rec,
    record_key,
    signed,
    signed_state,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.services.telemetry import KEY_ROTATION


def post(client: TestClient, body: dict[str, Any], headers: dict[str, str] = ADMIN) -> Any:
    return client.post("/api/v1/devices", json=body, headers=headers)


def test_a_key_is_enrolled_once_and_again_the_same(client: TestClient) -> None:
    key = record_key()
    r = post(client, {"id": "bike-1", "product": "bike", "record_key": b64(key)})
    assert r.status_code == 201 and r.json()["record_key_registered"] is True
    r = post(client, {"id": "bike-1", "product": "bike", "record_key": b64(key)})
    assert r.status_code == 200 and r.json()["record_key_registered"] is True
    # without a key, the product can still be changed; the key stays
    r = post(client, {"id": "bike-1", "product": "bike2"})
    assert r.status_code == 200 and r.json()["record_key_registered"] is True
    r = post(client, {"id": "bike-1", "product": "bike3", "record_key": b64(record_key(2))})
    assert r.status_code == 409 and r.json()["detail"] == KEY_ROTATION
    assert "rotation is not supported" in KEY_ROTATION
    device = client.get("/api/v1/devices/bike-1", headers=ADMIN).json()
    assert device["product"] == "bike2"  # a refused request changes nothing
    with client.app.state.db.connection() as store:  # type: ignore[attr-defined]
        assert store.record_key("bike-1") == key


def test_a_device_known_from_older_firmware_is_enrolled_later(
    client: TestClient, gateway: GatewaySim
) -> None:
    gateway.push([rec("bike-1", 1)])
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).json()["record_key_registered"] is False
    r = post(client, {"id": "bike-1", "product": "bike", "record_key": b64(record_key())})
    assert r.status_code == 200 and r.json()["record_key_registered"] is True
    assert r.json()["records"] == 1


@pytest.mark.parametrize("value", [
    "not base64!", b64(b"k" * 31), b64(b"k" * 33), "", b64(b"k" * 32)[:-1], " " + b64(b"k" * 32),
    b64(b"k" * 32).rstrip("="), 12, ["x"], {"k": 1},
])
def test_a_key_must_be_base64_of_32_bytes(client: TestClient, value: object) -> None:
    r = post(client, {"id": "bike-1", "product": "bike", "record_key": value})
    assert r.status_code == 422, r.text
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).status_code == 404


def test_only_the_admin_enrols_keys(client: TestClient, gateway: GatewaySim) -> None:
    body = {"id": "bike-1", "product": "bike", "record_key": b64(record_key())}
    assert post(client, body, headers={}).status_code == 401
    assert post(client, body, headers={"Authorization": f"Bearer {gateway.token}"}).status_code == 403
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).status_code == 404


def _forms(key: bytes) -> list[str]:
    b = base64.b64encode(key).decode()
    return [b, b.rstrip("="), key.hex(), key.hex().upper(), base64.urlsafe_b64encode(key).decode()]


def test_the_key_appears_in_no_answer_page_or_log(
    app: FastAPI, client: TestClient, gateway: GatewaySim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = record_key()
    enrol(client, "bike-1", key)
    answers = [post(client, {"id": "bike-1", "product": "bike", "record_key": b64(key)}).text,
               post(client, {"id": "bike-1", "product": "bike", "record_key": b64(record_key(2))}).text,
               # a body refused for another field must not echo the key back
               post(client, {"id": "bike/1", "product": "bike", "record_key": b64(key)}).text,
               post(client, {"id": "bike-1", "record_key": b64(key)}).text]
    good = signed("bike-1", 1, key)
    forged = signed("bike-1", 2, key).replace('"power":102', '"power":999')
    gateway.push([good, forged, rec("bike-1", 3)], [signed_state("bike-1", key, fw="0.2.0")])
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 500}},
               headers=ADMIN)
    # every GET of the API, as the OpenAPI lists it, and the dashboard
    paths = client.get("/openapi.json").json()["paths"]
    gets = [p for p, ops in paths.items() if "get" in ops]
    assert len(gets) >= 8
    for path in gets:
        url = path.replace("{device_id}", "bike-1").replace("{gateway_id}", "gw-1")
        for headers in (ADMIN, {"Authorization": f"Bearer {gateway.token}"}):
            r = client.get(url, headers=headers)
            assert r.status_code < 500, (url, r.text)
            answers.append(r.text)
    answers.append(client.get("/", headers=ADMIN).text)
    answers.append(client.get("/openapi.json").text)
    assert any("bad tag" in a for a in answers)  # the walk saw the quarantine
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for form in _forms(key):
        for text in (*answers, logs):
            assert form not in text
