"""Security on real parts: broker ACLs, certificate identity, signed and chained batches."""

from __future__ import annotations

import datetime
import subprocess
import time
import zlib
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from fleetloop.device_runner import micropython_binary
from fleetloop.stack import Stack, wait_records
from protocol import batch, record

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent


def publish_as(stack: Stack, device_id: str, topic: str, payload: bytes) -> None:
    """One publish from a fresh connection with `device_id`'s certificate. Mosquitto answers a
    denied QoS 1 publish and may then drop the connection, so each attempt has its own."""
    client = stack.mqtt_client(device_id)
    client.connect("localhost", stack.mqtt_port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            pass  # dropped after the denied publish: what counts is what gets through
    finally:
        client.disconnect()
        client.loop_stop()



def test_a_device_cannot_publish_for_another_device(stack: Stack) -> None:
    stack.start_path(["bike-1", "bike-2"])
    stack.register_device("bike-1", "bike")
    stack.register_device("bike-2", "bike")
    # Its own record, as a control that the path works.
    publish_as(stack, "bike-1", "fleet/bike-1/telemetry", stack.signed_record("bike-1", 1, 3))
    # On bike-2's topic: the broker's ACL drops it (it still PUBACKs under MQTT 3.1.1).
    publish_as(stack, "bike-1", "fleet/bike-2/telemetry", stack.signed_record("bike-2", 1, 1))
    # On its own topic but claiming to be bike-2: the gateway refuses it.
    publish_as(stack, "bike-1", "fleet/bike-1/telemetry", stack.signed_record("bike-2", 2, 2))
    records = wait_records(stack, "bike-1", 1)
    assert [r["m"]["power"] for r in records] == [3]
    stack.wait_until(lambda: stack.gateway_status()["ingest"]["rejected"] >= 1, timeout=10,
                     what="the gateway to refuse the record claiming another id")
    time.sleep(2)  # give anything wrongly let through time to reach the cloud
    assert stack.telemetry("bike-2") == []


def _foreign_identity(tmp: Path, cn: str) -> tuple[Path, Path]:
    """A certificate for `cn` from a CA the fleet never trusted, in DER for MicroPython."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "rogue.crt.der", tmp / "rogue.key.der"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _mp_connect(stack: Stack, cert: Path, key: Path, client_id: str) -> str:
    ca = stack.home / "keys" / "ca.crt.der"
    out = subprocess.run(
        [micropython_binary(), "-X", "heapsize=64K", str(HERE / "mp_connect.py"), "localhost",
         str(stack.mqtt_port), str(ca), str(cert), str(key), client_id],
        capture_output=True, text=True, timeout=30,
    )
    return out.stdout + out.stderr


def test_a_device_without_a_fleet_certificate_gets_no_connack(stack: Stack, tmp_path: Path) -> None:
    stack.start_path(["bike-1"])
    dev = stack.home / "keys" / "devices" / "bike-1"
    # Control: the fleet's own certificate is accepted from the same MicroPython script.
    assert "CONNACK 0" in _mp_connect(stack, dev / "cert.der", dev / "key.der", "bike-1")
    cert, key = _foreign_identity(tmp_path, "bike-1")
    answer = _mp_connect(stack, cert, key, "bike-1")
    assert "REFUSED" in answer and "CONNACK" not in answer.replace("no CONNACK", "")


def _post(stack: Stack, sealed: batch.SealedBatch) -> httpx.Response:
    token = stack.token_file.read_text().strip()
    return httpx.post(stack.cloud_url + batch.INGEST_PATH, content=sealed.body,
                      headers=sealed.headers(token), timeout=10)


def test_batches_with_an_unknown_key_or_a_broken_chain_store_nothing(stack: Stack) -> None:
    stack.keygen(["bike-1"])
    stack.start_cloud()
    stack.register_gateway()
    # An unsigned version 1 record of a device with no record key: stored once accepted.
    rec = record.encode_v1("bike-9", 1, 1, {"power": 1}).decode()
    forged = batch.seal(batch.Batch("gw-1", 1, batch.GENESIS, 1, (rec,)), Ed25519PrivateKey.generate())
    resp = _post(stack, forged)
    assert resp.status_code in (400, 401, 403) and "signature" in resp.text

    real_key = serialization.load_pem_private_key(
        (stack.home / "keys" / "gateways" / "gw-1" / "batch.key.pem").read_bytes(), password=None)
    assert isinstance(real_key, Ed25519PrivateKey)
    out_of_chain = batch.seal(batch.Batch("gw-1", 5, "a" * 64, 1, (rec,)), real_key)
    resp = _post(stack, out_of_chain)
    assert resp.status_code == 409
    assert stack.telemetry("bike-9") == []

    good = batch.seal(batch.Batch("gw-1", 1, batch.GENESIS, 1, (rec,)), real_key)
    assert _post(stack, good).status_code == 200
    assert len(stack.telemetry("bike-9")) == 1
    # The compressed body is what is signed over once inflated: flipping it breaks the signature.
    tampered = batch.SealedBatch(good.gateway, 2, good.digest,
                                 zlib.compress(zlib.decompress(good.body).replace(b'\\"power\\":1',
                                                                                b'\\"power\\":7')),
                                 good.signature)
    assert _post(stack, tampered).status_code == 400
