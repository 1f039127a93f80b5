"""fwtool.keys: the keys/ layout, permissions, idempotency and certificate contents."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fwtool.errors import FwToolError
from fwtool.keys import KeyLayout, generate, public_key_raw

EXPECTED = """
ca.key.pem ca.crt.pem ca.crt.der broker.key.pem broker.crt.pem
release.key.pem release.pub config.key.pem config.pub
gateways/gw-1/mqtt.key.pem gateways/gw-1/mqtt.crt.pem gateways/gw-1/batch.key.pem gateways/gw-1/batch.pub
devices/bike-1/key.der devices/bike-1/key.pem devices/bike-1/cert.der devices/bike-1/cert.pem
devices/bike-1/record.key
devices/mirror-1/key.der devices/mirror-1/key.pem devices/mirror-1/cert.der devices/mirror-1/cert.pem
devices/mirror-1/record.key
""".split()


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_keygen_writes_the_contract_layout(keyed_home: Path) -> None:
    root = keyed_home / "keys"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(EXPECTED)


def test_private_files_0600_dirs_0700(keyed_home: Path) -> None:
    root = keyed_home / "keys"
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.is_dir():
            assert mode == 0o700, p
        elif ".key." in p.name or p.name in ("key.der", "key.pem", "record.key"):
            assert mode == 0o600, p
        else:
            assert mode == 0o644, p


def test_returned_paths_are_the_files(tmp_path: Path) -> None:
    written = generate(tmp_path, ["gw-1"], ["bike-1", "mirror-1"])
    assert sorted(str(p.relative_to(tmp_path / "keys")) for p in written) == sorted(EXPECTED)


def test_second_run_rewrites_nothing(tmp_path: Path) -> None:
    generate(tmp_path, ["gw-1"], ["bike-1", "mirror-1"])
    before = _snapshot(tmp_path / "keys")
    assert generate(tmp_path, ["gw-1"], ["bike-1", "mirror-1"]) == []
    assert _snapshot(tmp_path / "keys") == before


def test_new_device_is_signed_by_the_existing_ca(tmp_path: Path) -> None:
    generate(tmp_path, ["gw-1"], ["bike-1"])
    before = _snapshot(tmp_path / "keys")
    written = generate(tmp_path, ["gw-1"], ["bike-1", "engine-1"])
    lay = KeyLayout.of_home(tmp_path)
    assert set(written) == {lay.device_key_pem("engine-1"), lay.device_key_der("engine-1"),
                            lay.device_cert_pem("engine-1"), lay.device_cert_der("engine-1"),
                            lay.device_record_key("engine-1")}
    after = _snapshot(tmp_path / "keys")
    assert {k: v for k, v in after.items() if k in before} == before
    _cert(lay.device_cert_pem("engine-1")).verify_directly_issued_by(_cert(lay.ca_cert_pem))


def test_force_regenerates_everything(tmp_path: Path) -> None:
    generate(tmp_path, ["gw-1"], ["bike-1", "mirror-1"])
    before = _snapshot(tmp_path / "keys")
    written = generate(tmp_path, ["gw-1"], ["bike-1", "mirror-1"], force=True)
    assert len(written) == len(EXPECTED)
    after = _snapshot(tmp_path / "keys")
    for name in EXPECTED:
        assert after[name][1] != before[name][1], name
    lay = KeyLayout.of_home(tmp_path)
    _cert(lay.device_cert_pem("bike-1")).verify_directly_issued_by(_cert(lay.ca_cert_pem))
    assert stat.S_IMODE(lay.ca_key_pem.stat().st_mode) == 0o600


def test_missing_cert_is_reissued_for_the_existing_key(tmp_path: Path) -> None:
    generate(tmp_path, [], ["bike-1"])
    lay = KeyLayout.of_home(tmp_path)
    key_before = lay.device_key_pem("bike-1").read_bytes()
    lay.device_cert_pem("bike-1").unlink()
    lay.device_cert_der("bike-1").unlink()
    generate(tmp_path, [], ["bike-1"])
    assert lay.device_key_pem("bike-1").read_bytes() == key_before
    cert = _cert(lay.device_cert_pem("bike-1"))
    key = serialization.load_pem_private_key(key_before, None)
    assert cert.public_key() == key.public_key()
    assert lay.device_cert_der("bike-1").read_bytes() == cert.public_bytes(serialization.Encoding.DER)


def test_certificates_signed_by_another_ca_are_refused(tmp_path: Path) -> None:
    generate(tmp_path, [], ["bike-1"])
    lay = KeyLayout.of_home(tmp_path)
    lay.ca_key_pem.unlink()
    lay.ca_cert_pem.unlink()
    lay.ca_cert_der.unlink()
    with pytest.raises(FwToolError, match="--force"):
        generate(tmp_path, [], ["bike-1"])


def test_ca_is_a_10_year_p256_ca(keyed_home: Path) -> None:
    ca = _cert(KeyLayout.of_home(keyed_home).ca_cert_pem)
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert 3649 <= days <= 3651


@pytest.mark.parametrize("device", ["bike-1", "mirror-1"])
def test_device_cert_chains_to_ca_with_cn(keyed_home: Path, device: str) -> None:
    lay = KeyLayout.of_home(keyed_home)
    cert = _cert(lay.device_cert_pem(device))
    cert.verify_directly_issued_by(_cert(lay.ca_cert_pem))
    assert _cn(cert) == device
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert x509.load_der_x509_certificate(lay.device_cert_der(device).read_bytes()) == cert
    pem_key = serialization.load_pem_private_key(lay.device_key_pem(device).read_bytes(), None)
    der_key = serialization.load_der_private_key(lay.device_key_der(device).read_bytes(), None)
    assert pem_key.private_numbers() == der_key.private_numbers()  # type: ignore[union-attr]
    assert lay.device_key_pem(device).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_gateway_mqtt_cert(keyed_home: Path) -> None:
    lay = KeyLayout.of_home(keyed_home)
    cert = _cert(lay.gateway_mqtt_cert_pem("gw-1"))
    cert.verify_directly_issued_by(_cert(lay.ca_cert_pem))
    assert _cn(cert) == "gw-1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_broker_cert_sans(keyed_home: Path) -> None:
    lay = KeyLayout.of_home(keyed_home)
    cert = _cert(lay.broker_cert_pem)
    cert.verify_directly_issued_by(_cert(lay.ca_cert_pem))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


@pytest.mark.parametrize("name", ["release", "config", "gateways/gw-1/batch"])
def test_ed25519_pub_is_raw_32_bytes_of_the_key(keyed_home: Path, name: str) -> None:
    root = keyed_home / "keys"
    raw = (root / f"{name}.pub").read_bytes()
    assert len(raw) == 32
    key = serialization.load_pem_private_key((root / f"{name}.key.pem").read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    key.public_key().verify(key.sign(b"x"), b"x")
    assert public_key_raw(root / f"{name}.pub") == raw
    assert public_key_raw(root / f"{name}.key.pem") == raw


@pytest.mark.parametrize("bad", ["", "-x", "_x", "a/b", "a+b", "a#", "x" * 65, "bike 1", "..", "é"])
def test_bad_ids_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid device id"):
        generate(tmp_path, ["gw-1"], [bad])
    with pytest.raises(ValueError, match="invalid gateway id"):
        generate(tmp_path, [bad], [])
    assert not (tmp_path / "keys").exists()  # validated before anything is written


def test_der_twin_that_no_longer_matches_is_refused(tmp_path: Path) -> None:
    generate(tmp_path, [], ["bike-1"])
    lay = KeyLayout.of_home(tmp_path)
    lay.device_key_pem("bike-1").unlink()
    lay.device_cert_pem("bike-1").unlink()
    with pytest.raises(FwToolError, match="--force"):
        generate(tmp_path, [], ["bike-1"])


def test_an_id_cannot_be_both_a_gateway_and_a_device(tmp_path: Path) -> None:
    from fwtool.errors import UsageError
    from fwtool.keys import generate

    with pytest.raises(UsageError, match="gw-1"):
        generate(tmp_path, ["gw-1"], ["gw-1"])
    generate(tmp_path, ["gw-1"], ["bike-1"])
    with pytest.raises(UsageError, match="bike-1"):
        generate(tmp_path, ["bike-1"], [])


def test_record_keys_are_random_32_bytes_per_device_and_kept(tmp_path: Path) -> None:
    generate(tmp_path, ["gw-1"], ["bike-1", "mirror-1"])
    lay = KeyLayout.of_home(tmp_path)
    a, b = lay.device_record_key("bike-1"), lay.device_record_key("mirror-1")
    assert len(a.read_bytes()) == len(b.read_bytes()) == 32
    assert a.read_bytes() != b.read_bytes()
    assert stat.S_IMODE(a.stat().st_mode) == 0o600
    # Derived from nothing: another home with the same ids gets other keys.
    generate(tmp_path / "other", ["gw-1"], ["bike-1"])
    assert KeyLayout.of_home(tmp_path / "other").device_record_key("bike-1").read_bytes() != a.read_bytes()
    kept = a.read_bytes()
    generate(tmp_path, ["gw-1"], ["bike-1"])
    assert a.read_bytes() == kept  # never overwritten without force
    generate(tmp_path, ["gw-1"], ["bike-1"], force=True)
    assert a.read_bytes() != kept and len(a.read_bytes()) == 32


def test_a_damaged_record_key_is_refused_not_replaced(tmp_path: Path) -> None:
    generate(tmp_path, ["gw-1"], ["bike-1"])
    path = KeyLayout.of_home(tmp_path).device_record_key("bike-1")
    path.write_bytes(b"short")
    with pytest.raises(FwToolError, match="32-byte record key"):
        generate(tmp_path, ["gw-1"], ["bike-1"])
    assert path.read_bytes() == b"short"
