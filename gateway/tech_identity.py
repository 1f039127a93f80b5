"""The technician's MQTT identity on this gateway's broker (`fleetloop gateway ping`).

The broker lets one connection per certificate CN, and the running gateway holds its own: a
ping as the gateway would knock the gateway off. So the technician has a certificate of its
own, CN `_technician`, issued by the local device CA when the gateway starts and the CA's
private key is on this box (a development or lab home; `fleetloop fw keygen` puts it there).
A CN starting with `_` is no valid device id (protocol.topics.valid_device_id), so no device
certificate can carry it. The broker's ACL lets it write `fleet/+/ping` and read
`fleet/+/pong`, nothing else (gateway.broker_config).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import KeyFileError

CN = "_technician"
VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)  # a start within this of expiry issues a new one
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class TechIdentity:
    ca_cert: Path
    ca_key: Path  # present only where the factory's CA key is (else no identity is issued)
    cert: Path
    key: Path

    @classmethod
    def under(cls, home: Path, gateway_id: str) -> TechIdentity:
        keys = home / "keys"
        own = home / "gateways" / gateway_id / "technician"
        return cls(ca_cert=keys / "ca.crt.pem", ca_key=keys / "ca.key.pem",
                   cert=own / "mqtt.crt.pem", key=own / "mqtt.key.pem")

    def needs_issue(self, now: dt.datetime) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
            ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
            cert.verify_directly_issued_by(ca)
            key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return True  # any doubt: issue anew
        expiring = cert.not_valid_after_utc - now < RENEW_BEFORE
        return expiring or cert.public_key() != key.public_key()

    def ensure(self) -> bool:
        """Issue the identity if it is missing, expiring, not its key's or from another CA,
        and the CA key is here; True when one is usable afterwards."""
        now = dt.datetime.now(dt.UTC)
        if not self.needs_issue(now):
            return True
        if not self.ca_key.is_file():
            return False
        self.issue(now)
        return True

    def issue(self, now: dt.datetime) -> None:
        try:
            ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"cannot issue the technician's certificate: {exc}") from exc
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"{self.ca_key} is not an EC key: no technician certificate")
        key = ec.generate_private_key(ec.SECP256R1())
        end = min(now + VALIDITY, ca_cert.not_valid_after_utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - CLOCK_SKEW).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        try:
            _write(self.key, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            _write(self.cert, cert.public_bytes(serialization.Encoding.PEM))
        except OSError as exc:
            raise KeyFileError(f"cannot write the technician's certificate: {exc}") from exc


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
