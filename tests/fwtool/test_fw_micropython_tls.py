"""The generated keys work for real TLS clients (MicroPython, CPython ssl) against Mosquitto."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fwtool.keys import KeyLayout, generate
from fwtool.provision import provision

MICROPYTHON = Path(sys.executable).with_name("micropython")
pytestmark = pytest.mark.e2e
needs_micropython = pytest.mark.skipif(not MICROPYTHON.exists(),
                                       reason="micropython not installed in the venv")
PROBE = Path(__file__).with_name("mqtt_probe_mp.py")
CONNACK_ACCEPTED = "20020000"
BrokerFactory = Callable[[Path, Path], AbstractContextManager[tuple[int, Path]]]


def _device_certs(lay: KeyLayout, device: str, dest: Path) -> Path:
    dest.mkdir()
    shutil.copy(lay.ca_cert_der, dest / "ca.der")
    shutil.copy(lay.device_cert_der(device), dest / "cert.der")
    shutil.copy(lay.device_key_der(device), dest / "key.der")
    return dest


def _mqtt_connect(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def _probe(certs: Path, port: int, client_id: str, key_name: str) -> str:
    out = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=64K", str(PROBE), str(certs), str(port), client_id, key_name],
        capture_output=True, text=True, timeout=30,
    )
    return out.stdout.strip() + out.stderr.strip()


@needs_micropython
def test_micropython_device_connects_with_generated_keys(
    tmp_path: Path, broker_factory: BrokerFactory
) -> None:
    home = tmp_path / "home"
    generate(home, ["gw-1"], ["bike-1"])
    lay = KeyLayout.of_home(home)
    image = provision(home, "bike-1", "bike", "localhost", 8883)
    certs = image / "certs"  # exactly what a board would hold
    key = serialization.load_der_private_key((certs / "key.der").read_bytes(), None)
    (certs / "key.pkcs8.der").write_bytes(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with broker_factory(lay.root, tmp_path) as (port, log):
        # key.der as written (SEC1) and the PKCS8 form: mbedTLS accepts both
        for key_name in ("key.der", "key.pkcs8.der"):
            result = _probe(certs, port, "bike-1", key_name)
            assert result == f"CONNACK {CONNACK_ACCEPTED}", (result, log.read_text())
        assert "u'bike-1'" in log.read_text()  # the broker took the certificate CN as username


@needs_micropython
def test_certificate_from_another_ca_is_refused(tmp_path: Path, broker_factory: BrokerFactory) -> None:
    generate(tmp_path / "home", [], [])
    generate(tmp_path / "rogue", [], ["bike-1"])
    lay = KeyLayout.of_home(tmp_path / "home")
    rogue = _device_certs(KeyLayout.of_home(tmp_path / "rogue"), "bike-1", tmp_path / "certs")
    shutil.copy(lay.ca_cert_der, rogue / "ca.der")  # trusts the real broker; cert is foreign
    with broker_factory(lay.root, tmp_path) as (port, log):
        result = _probe(rogue, port, "bike-1", "key.der")
        assert result.startswith("ERROR"), (result, log.read_text())
        assert "certificate verify failed" in log.read_text()
        assert "u'bike-1'" not in log.read_text()


@pytest.mark.parametrize("server_name", ["localhost", "127.0.0.1"])
def test_cpython_gateway_connects_with_its_mqtt_cert(
    tmp_path: Path, broker_factory: BrokerFactory, server_name: str
) -> None:
    generate(tmp_path, ["gw-1"], [])
    lay = KeyLayout.of_home(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(lay.ca_cert_pem))
    ctx.load_cert_chain(lay.gateway_mqtt_cert_pem("gw-1"), lay.gateway_mqtt_key_pem("gw-1"))
    with broker_factory(lay.root, tmp_path) as (port, log):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_name) as conn:  # checks the SAN
                conn.sendall(_mqtt_connect("gw-1"))
                assert conn.recv(4).hex() == CONNACK_ACCEPTED, log.read_text()
        assert "u'gw-1'" in log.read_text()
