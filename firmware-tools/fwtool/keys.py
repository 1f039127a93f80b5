"""Key material of a fleet: the device CA, TLS certificates, Ed25519 signing keys and each
device's record key.

``generate`` writes the ``keys/`` layout of FLEETLOOP_HOME (see docs/factory.md). It is idempotent:
files that exist are kept and reused (a new device certificate is signed by the existing CA);
nothing is overwritten unless ``force=True``. Private keys are PEM PKCS8, unencrypted, mode 0600;
device keys are also written as DER for MicroPython's ``tls`` (SEC1 form, see ``DEVICE_KEY_DER``).
A device's record key (``devices/<id>/record.key``, 32 raw bytes, 0600) comes straight from the
OS's random source and is derived from nothing: it tags the device's records (protocol.tag) and
only the factory, the device's image and the cloud (after ``fleetloop fw enrol``) hold it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol import tag, topics

from .errors import FwToolError, InvalidIdError, UsageError
from .fsutil import PRIVATE_FILE, PUBLIC_FILE, ensure_dir, write_file

VALIDITY = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(minutes=5)
ORG = "fleetloop"
CA_CN = "fleetloop device CA"
BROKER_CN = "localhost"
BROKER_DNS = ("localhost",)
BROKER_IPS = ("127.0.0.1",)
DEVICE_KEY_DER = serialization.PrivateFormat.TraditionalOpenSSL
"""DER form of device keys (SEC1, 121 bytes for P-256). MicroPython's tls (mbedTLS) accepted both
SEC1 and PKCS8 DER in a real handshake (tests/fwtool/test_fw_micropython_tls.py); SEC1 is the
smaller of the two and what embedded TLS stacks accept most widely."""

EcKey = ec.EllipticCurvePrivateKey
_valid_id: Callable[[object], bool] = topics.valid_device_id


@dataclass(frozen=True)
class KeyLayout:
    """Paths of the ``keys/`` directory of a FLEETLOOP_HOME; ``root`` is that directory."""

    root: Path

    @classmethod
    def of_home(cls, home: Path) -> KeyLayout:
        return cls(Path(home) / "keys")

    @property
    def ca_key_pem(self) -> Path:
        return self.root / "ca.key.pem"

    @property
    def ca_cert_pem(self) -> Path:
        return self.root / "ca.crt.pem"

    @property
    def ca_cert_der(self) -> Path:
        return self.root / "ca.crt.der"

    @property
    def broker_key_pem(self) -> Path:
        return self.root / "broker.key.pem"

    @property
    def broker_cert_pem(self) -> Path:
        return self.root / "broker.crt.pem"

    @property
    def release_key_pem(self) -> Path:
        return self.root / "release.key.pem"

    @property
    def release_pub(self) -> Path:
        return self.root / "release.pub"

    @property
    def config_key_pem(self) -> Path:
        return self.root / "config.key.pem"

    @property
    def config_pub(self) -> Path:
        return self.root / "config.pub"

    @property
    def gateways_dir(self) -> Path:
        return self.root / "gateways"

    @property
    def devices_dir(self) -> Path:
        return self.root / "devices"

    def gateway_dir(self, gateway_id: str) -> Path:
        return self.gateways_dir / check_id(gateway_id, "gateway")

    def gateway_mqtt_key_pem(self, gateway_id: str) -> Path:
        return self.gateway_dir(gateway_id) / "mqtt.key.pem"

    def gateway_mqtt_cert_pem(self, gateway_id: str) -> Path:
        return self.gateway_dir(gateway_id) / "mqtt.crt.pem"

    def gateway_batch_key_pem(self, gateway_id: str) -> Path:
        return self.gateway_dir(gateway_id) / "batch.key.pem"

    def gateway_batch_pub(self, gateway_id: str) -> Path:
        return self.gateway_dir(gateway_id) / "batch.pub"

    def device_dir(self, device_id: str) -> Path:
        return self.devices_dir / check_id(device_id, "device")

    def device_key_der(self, device_id: str) -> Path:
        return self.device_dir(device_id) / "key.der"

    def device_key_pem(self, device_id: str) -> Path:
        return self.device_dir(device_id) / "key.pem"

    def device_cert_der(self, device_id: str) -> Path:
        return self.device_dir(device_id) / "cert.der"

    def device_cert_pem(self, device_id: str) -> Path:
        return self.device_dir(device_id) / "cert.pem"

    def device_record_key(self, device_id: str) -> Path:
        return self.device_dir(device_id) / "record.key"


def read_record_key(path: Path) -> bytes:
    """The 32 raw bytes of a device's record key; FwToolError if the file is anything else."""
    data = Path(path).read_bytes()
    if len(data) != tag.KEY_BYTES:
        raise FwToolError(f"{path}: expected a {tag.KEY_BYTES}-byte record key, got {len(data)} "
                          "bytes; rerun keygen with --force")
    return data


def check_id(value: str, kind: str = "device") -> str:
    """Return ``value`` if it is a valid device/gateway id, else raise InvalidIdError."""
    if not _valid_id(value):
        raise InvalidIdError(
            f"invalid {kind} id {value!r}: use 1-64 characters of A-Z a-z 0-9 - _, "
            "not starting with '-' or '_'"
        )
    return value


def public_key_raw(path: Path) -> bytes:
    """Raw 32-byte Ed25519 public key from a ``.pub`` file (raw) or a PEM key (private or public)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"-----BEGIN"):
        if len(data) != 32:
            raise FwToolError(f"{path}: expected a raw 32-byte Ed25519 public key, got {len(data)} bytes")
        return data
    pub: object
    if b"PRIVATE KEY" in data:
        pub = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        pub = serialization.load_pem_public_key(data)
    if not isinstance(pub, ed25519.Ed25519PublicKey):
        raise FwToolError(f"{path}: not an Ed25519 key")
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_ed25519_private(path: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise FwToolError(f"{path}: not an Ed25519 private key")
    return key


FileWriter = Callable[[Path, bytes, int], None]
DeviceDone = Callable[[str, FwToolError | None], None]


def generate(
    home: Path,
    gateway_ids: Sequence[str],
    device_ids: Sequence[str],
    force: bool = False,
    *,
    write: FileWriter = write_file,
    on_device: DeviceDone | None = None,
) -> list[Path]:
    """Write (or complete) ``home/keys``; return the paths written, in write order.

    The CA is loaded (or made) once for the whole run. ``write`` replaces write_file (a batch
    passes fsutil.SyncedBatch.write and commits once). With ``on_device``, it is told of each
    device as its keys are done, and a device whose keys fail is reported there and skipped
    instead of ending the run.
    """
    for gw in gateway_ids:
        check_id(gw, "gateway")
    for dev in device_ids:
        check_id(dev, "device")
    layout = KeyLayout.of_home(Path(home))
    _refuse_shared_ids(layout, gateway_ids, device_ids)
    return _Writer(layout, force, write, on_device).run(gateway_ids, device_ids)


def _existing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_dir()} if directory.is_dir() else set()


def _refuse_shared_ids(layout: KeyLayout, gateway_ids: Sequence[str], device_ids: Sequence[str]) -> None:
    # Certificates carry only a CN, and the broker grants the gateway's CN all of fleet/#:
    # a device named like a gateway would get the gateway's rights.
    gateways = set(gateway_ids) | _existing(layout.gateways_dir)
    devices = set(device_ids) | _existing(layout.devices_dir)
    shared = sorted(gateways & devices)
    if shared:
        raise UsageError(f"id used for both a gateway and a device: {', '.join(shared)}")


class _Writer:
    """One keygen run: remembers what it wrote; constructors only store."""

    def __init__(self, layout: KeyLayout, force: bool, write: FileWriter = write_file,
                 on_device: DeviceDone | None = None) -> None:
        self.layout = layout
        self.force = force
        self.write = write
        self.on_device = on_device
        self.written: list[Path] = []

    def run(self, gateway_ids: Sequence[str], device_ids: Sequence[str]) -> list[Path]:
        lay = self.layout
        ensure_dir(lay.root)
        ca_key = self._ec_key(lay.ca_key_pem)
        ca_cert = self._cert(lay.ca_cert_pem, ca_key, None, partial(_ca_cert, ca_key))
        self._der_copy(lay.ca_cert_der, ca_cert)
        signer = (ca_key, ca_cert)
        broker_key = self._ec_key(lay.broker_key_pem)
        self._cert(lay.broker_cert_pem, broker_key, signer, partial(_broker_cert, broker_key, signer))
        self._ed25519(lay.release_key_pem, lay.release_pub)
        self._ed25519(lay.config_key_pem, lay.config_pub)
        for gw in dict.fromkeys(gateway_ids):
            ensure_dir(lay.gateways_dir)
            ensure_dir(lay.gateway_dir(gw))
            key = self._ec_key(lay.gateway_mqtt_key_pem(gw))
            self._cert(lay.gateway_mqtt_cert_pem(gw), key, signer,
                       partial(_client_cert, key, gw, signer))
            self._ed25519(lay.gateway_batch_key_pem(gw), lay.gateway_batch_pub(gw))
        if device_ids:
            ensure_dir(lay.devices_dir)
        for dev in dict.fromkeys(device_ids):
            try:
                self._device(dev, signer)
            except FwToolError as exc:
                if self.on_device is None:
                    raise
                self.on_device(dev, exc)
                continue
            if self.on_device is not None:
                self.on_device(dev, None)
        return self.written

    def _device(self, dev: str, signer: tuple[EcKey, x509.Certificate]) -> None:
        lay = self.layout
        ensure_dir(lay.device_dir(dev))
        key = self._ec_key(lay.device_key_pem(dev))
        cert = self._cert(lay.device_cert_pem(dev), key, signer,
                          partial(_client_cert, key, dev, signer))
        self._der_copy(lay.device_cert_der(dev), cert)
        self._der_key(lay.device_key_der(dev), key)
        self._record_key(lay.device_record_key(dev))

    def _needed(self, path: Path) -> bool:
        return self.force or not path.exists()

    def _write(self, path: Path, data: bytes, mode: int) -> None:
        self.write(path, data, mode)
        self.written.append(path)

    def _ec_key(self, path: Path) -> EcKey:
        if not self._needed(path):
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise FwToolError(f"{path}: not an EC private key; rerun keygen with --force")
            return key
        key = ec.generate_private_key(ec.SECP256R1())
        self._write(path, _pem_private(key), PRIVATE_FILE)
        return key

    def _ed25519(self, key_path: Path, pub_path: Path) -> None:
        if self._needed(key_path):
            key = ed25519.Ed25519PrivateKey.generate()
            self._write(key_path, _pem_private(key), PRIVATE_FILE)
        else:
            key = load_ed25519_private(key_path)
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if pub_path.exists() and not self.force:
            if pub_path.read_bytes() != raw:
                raise FwToolError(f"{pub_path} does not match {key_path.name}; rerun keygen with --force")
            return
        self._write(pub_path, raw, PUBLIC_FILE)

    def _record_key(self, path: Path) -> None:
        if self._needed(path):
            self._write(path, secrets.token_bytes(tag.KEY_BYTES), PRIVATE_FILE)
        else:
            read_record_key(path)  # a damaged key is reported, never silently replaced

    def _cert(
        self,
        path: Path,
        key: EcKey,
        signer: tuple[EcKey, x509.Certificate] | None,
        make: Callable[[], x509.Certificate],
    ) -> x509.Certificate:
        if self._needed(path):
            cert = make()
            self._write(path, cert.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE)
            return cert
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        _check_pair(path, cert, key, signer[1] if signer else cert)
        return cert

    def _der_copy(self, path: Path, cert: x509.Certificate) -> None:
        self._twin(path, cert.public_bytes(serialization.Encoding.DER), PUBLIC_FILE)

    def _der_key(self, path: Path, key: EcKey) -> None:
        der = key.private_bytes(serialization.Encoding.DER, DEVICE_KEY_DER, serialization.NoEncryption())
        self._twin(path, der, PRIVATE_FILE)

    def _twin(self, path: Path, data: bytes, mode: int) -> None:
        """Write the DER twin of a PEM file, or check that the existing one still matches."""
        if path.exists() and not self.force:
            if path.read_bytes() != data:
                raise FwToolError(f"{path} differs from its PEM twin; rerun keygen with --force")
            return
        self._write(path, data, mode)


def _check_pair(path: Path, cert: x509.Certificate, key: EcKey, issuer: x509.Certificate) -> None:
    """Refuse an existing certificate that no longer fits its key or the CA."""
    if cert.public_key() != key.public_key():
        raise FwToolError(f"{path} does not match its private key; rerun keygen with --force")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise FwToolError(f"{path} is not signed by the current CA; rerun keygen with --force") from exc


def _pem_private(key: EcKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, key: EcKey, not_after: dt.datetime | None
             ) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    end = now + VALIDITY
    if not_after is not None:
        end = min(end, not_after)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _ca_cert(key: EcKey) -> x509.Certificate:
    name = _name(CA_CN)
    return (_builder(name, name, key, None)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA256()))


def _leaf(key: EcKey, cn: str, signer: tuple[EcKey, x509.Certificate],
          usage: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    ca_key, ca_cert = signer
    return (_builder(_name(cn), ca_cert.subject, key, ca_cert.not_valid_after_utc)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))


def _broker_cert(key: EcKey, signer: tuple[EcKey, x509.Certificate]) -> x509.Certificate:
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in BROKER_DNS]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in BROKER_IPS]
    return (_leaf(key, BROKER_CN, signer, ExtendedKeyUsageOID.SERVER_AUTH)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(signer[0], hashes.SHA256()))


def _client_cert(key: EcKey, cn: str, signer: tuple[EcKey, x509.Certificate]) -> x509.Certificate:
    return _leaf(key, cn, signer, ExtendedKeyUsageOID.CLIENT_AUTH).sign(signer[0], hashes.SHA256())
