"""gateway.revocation with the factory's real CRLs (fwtool.revoke): only a CRL the device CA
signed, newer than the one in use, reaches the broker, which is then restarted once."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from fwtool import revoke
from fwtool.errors import FwToolError
from fwtool.keys import KeyLayout, generate

from gateway.broker_config import render_config
from gateway.revocation import RevocationError, Revocations, crl_number, verify_crl


@pytest.fixture
def home(tmp_path: Path) -> Path:
    generate(tmp_path / "factory", ["gw-1"], ["bike-1", "bike-2"])
    return tmp_path / "factory"


def serial(home: Path, device: str) -> str:
    return revoke.cert_identity(KeyLayout.of_home(home).device_cert_der(device).read_bytes())[1]


class Cloud:
    def __init__(self) -> None:
        self.revoked: list[dict[str, object]] = []
        self.crl: bytes | None = None
        self.number = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/revocations":
            return httpx.Response(200, json=self.revoked)
        if request.url.path == "/api/v1/gateway/crl":
            if self.crl is None:
                return httpx.Response(404, json={"detail": "no CRL uploaded yet"})
            return httpx.Response(200, content=self.crl,
                                  headers={"X-Fleetloop-Crl-Number": str(self.number)})
        if request.url.path == "/api/v1/revocations/crl" and request.method == "PUT":
            self.crl = request.content
            self.number = crl_number(x509.load_der_x509_crl(request.content))
            return httpx.Response(200, json={"number": self.number})
        return httpx.Response(404)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))


def test_the_factory_signs_what_the_gateway_accepts(home: Path, tmp_path: Path) -> None:
    cloud = Cloud()
    cloud.revoked = [{"device": "bike-1", "cert_serial": serial(home, "bike-1")},
                     {"device": "bike-2", "cert_serial": None}]  # found in the factory's keys
    with cloud.client() as http:
        result = revoke.sign_and_upload(home, "http://cloud", "t", http)
    assert result.serials == {"bike-1": serial(home, "bike-1"), "bike-2": serial(home, "bike-2")}
    crl = verify_crl(cloud.crl or b"", KeyLayout.of_home(home).ca_cert_pem)
    assert {format(r.serial_number, "x") for r in crl} == set(result.serials.values())

    token = tmp_path / "token"
    token.write_text("gw-token")
    restarts: list[int] = []
    crl_path = tmp_path / "broker" / "crl.pem"
    crl_path.parent.mkdir()
    gw = Revocations("http://cloud", token, KeyLayout.of_home(home).ca_cert_pem, crl_path,
                     lambda: restarts.append(1))
    with cloud.client() as http:
        assert gw.poll_once(http) is True
        assert gw.poll_once(http) is False  # the same CRL: no second restart
    assert restarts == [1] and crl_path.read_bytes().startswith(b"-----BEGIN X509 CRL")
    assert gw.is_revoked("bike-1") and not gw.is_revoked("bike-3")
    assert gw.status()["crl_number"] == result.number


def test_a_crl_from_another_ca_or_expired_is_refused(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "rogue"
    generate(other, ["gw-1"], ["bike-1"])
    rogue = revoke.build_crl(other, {"bike-1": "1"}, 99)
    ca = KeyLayout.of_home(home).ca_cert_pem
    with pytest.raises(RevocationError, match="not signed by the device CA"):
        verify_crl(rogue, ca)
    old = revoke.build_crl(home, {}, 5, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    with pytest.raises(RevocationError, match="expired"):
        verify_crl(old, ca)
    with pytest.raises(RevocationError, match="not an X.509 CRL"):
        verify_crl(b"garbage", ca)
    cloud = Cloud()
    cloud.crl, cloud.number = rogue, 99
    token = tmp_path / "token"
    token.write_text("gw-token")
    restarts: list[int] = []
    crl_path = tmp_path / "crl.pem"
    gw = Revocations("http://cloud", token, ca, crl_path, lambda: restarts.append(1))
    with cloud.client() as http, pytest.raises(RevocationError):
        gw.poll_once(http)
    assert restarts == [] and not crl_path.exists()


def test_a_revoked_device_without_a_known_serial_stops_the_factory(home: Path) -> None:
    cloud = Cloud()
    cloud.revoked = [{"device": "ghost-9", "cert_serial": None}]
    with cloud.client() as http, pytest.raises(FwToolError, match="ghost-9"):
        revoke.sign_and_upload(home, "http://cloud", "t", http)
    assert cloud.crl is None


def test_the_broker_config_names_the_crl_only_when_there_is_one(tmp_path: Path) -> None:
    from gateway.broker_config import BrokerConfig
    from gateway.keys import GatewayKeys

    cfg = BrokerConfig(directory=tmp_path, bind="127.0.0.1", port=1883,
                       keys=GatewayKeys.under(tmp_path, "gw-1"), gateway_id="gw-1", user="me")
    assert "crlfile" not in render_config(cfg)
    assert f"crlfile {cfg.crl_path}" in render_config(cfg, crl=True).splitlines()


def test_the_poller_stops_and_reports_errors(tmp_path: Path) -> None:
    gw = Revocations("http://127.0.0.1:9", tmp_path / "none", tmp_path / "ca.pem",
                     tmp_path / "crl.pem", lambda: None, interval_s=0.01, timeout_s=0.5)
    stop = threading.Event()
    stop.set()
    gw.run(stop)
    assert "no gateway token" in (gw.status()["last_error"] or "")
    assert json.dumps(gw.status())
