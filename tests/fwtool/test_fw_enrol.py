"""fwtool.enrol and `fleetloop fw enrol`: the device's record key goes to the cloud's admin API,
once, and a different key already registered is never overwritten."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from fwtool import enrol as enrolment
from fwtool.cli import app
from fwtool.errors import FwToolError, UsageError
from fwtool.keys import KeyLayout, generate
from typer.testing import CliRunner

runner = CliRunner()


class FakeCloud:
    """POST /api/v1/devices as the cloud answers it: 201 new, 200 same key, 409 another key."""

    def __init__(self, token: str = "admin-secret") -> None:
        self.token = token
        self.keys: dict[str, str] = {}
        self.requests: list[dict] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"detail": "bad token"})
        assert request.url.path == "/api/v1/devices" and request.method == "POST"
        body = json.loads(request.content)
        self.requests.append(body)
        known = self.keys.get(body["id"])
        if known is None:
            self.keys[body["id"]] = body["record_key"]
            return httpx.Response(201, json={"id": body["id"]})
        return httpx.Response(200 if known == body["record_key"] else 409, json={})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    generate(tmp_path, ["gw-1"], ["bike-1"])
    return tmp_path


def test_enrol_sends_the_record_key_once_and_never_replaces_another(home: Path) -> None:
    cloud = FakeCloud()
    key = KeyLayout.of_home(home).device_record_key("bike-1").read_bytes()
    with cloud.client() as c:
        assert enrolment.enrol(home, "bike-1", "bike", "http://cloud", "admin-secret", c) == 201
        cert = x509.load_der_x509_certificate(
            KeyLayout.of_home(home).device_cert_der("bike-1").read_bytes())
        assert cloud.requests == [{
            "id": "bike-1", "product": "bike", "record_key": base64.b64encode(key).decode(),
            "cert_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
            "cert_serial": format(cert.serial_number, "x")}]
        assert enrolment.enrol(home, "bike-1", "bike", "http://cloud/", "admin-secret", c) == 200
        cloud.keys["bike-1"] = base64.b64encode(b"\x00" * 32).decode()
        with pytest.raises(enrolment.EnrolConflict, match="different record key"):
            enrolment.enrol(home, "bike-1", "bike", "http://cloud", "admin-secret", c)
        with pytest.raises(FwToolError, match="refused the token"):
            enrolment.enrol(home, "bike-1", "bike", "http://cloud", "wrong", c)


@pytest.mark.parametrize(("device", "product", "url", "message"), [
    ("ghost-1", "bike", "http://cloud", "fleetloop fw keygen"),
    ("bike-1", "car", "http://cloud", "unknown product"),
    ("bike-1", "bike", "cloud:8000", "an http"),
    ("a/b", "bike", "http://cloud", "invalid device id"),
])
def test_enrol_refuses_bad_input_before_any_request(home: Path, device: str, product: str,
                                                    url: str, message: str) -> None:
    cloud = FakeCloud()
    with cloud.client() as c, pytest.raises(FwToolError, match=message):
        enrolment.enrol(home, device, product, url, "admin-secret", c)
    assert cloud.requests == []


def test_admin_token_from_file_or_env(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("from-file\n")
    assert enrolment.admin_token(f, "from-env") == "from-file"
    assert enrolment.admin_token(None, "from-env") == "from-env"
    with pytest.raises(UsageError, match="FLEETLOOP_ADMIN_TOKEN"):
        enrolment.admin_token(None, None)
    with pytest.raises(UsageError, match="cannot read"):
        enrolment.admin_token(tmp_path / "missing", None)


def test_cli_errors_are_clean(home: Path) -> None:
    args = ["enrol", "--home", str(home), "--id", "bike-1", "--product", "bike"]
    no_token = runner.invoke(app, [*args, "--cloud", "http://127.0.0.1:9"],
                             env={"FLEETLOOP_ADMIN_TOKEN": ""})
    assert no_token.exit_code == 2 and "admin token is needed" in no_token.output
    unreachable = runner.invoke(app, [*args, "--cloud", "http://127.0.0.1:9"],
                                env={"FLEETLOOP_ADMIN_TOKEN": "t"})
    assert unreachable.exit_code == 1 and "cannot reach the cloud" in unreachable.output
    assert "Traceback" not in unreachable.output
