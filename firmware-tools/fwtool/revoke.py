"""Revocation at the factory: the device CA signs a CRL of the devices the cloud revoked.

    fleetloop fw crl --cloud URL --token-file F

1. GET <cloud>/api/v1/revocations (factory token): the revoked devices, with the serial of
   each one's certificate as enrolled (`fw provision --cloud` / `fw enrol` send it). A
   revoked device enrolled without one is looked up in this home's keys (its cert.der);
   one found in neither is reported and the command fails: a CRL that misses a revoked
   device would tell the gateways it is fine.
2. Build a CRL with every serial, signed with the device CA key (it never leaves the
   factory: a gateway or cloud holding it could mint devices), numbered above the cloud's
   newest CRL, valid for VALIDITY (run it again before then: Mosquitto refuses every client
   once its CRL has expired).
3. PUT it to <cloud>/api/v1/revocations/crl; the gateways pull it, verify it against the
   device CA certificate, and restart their brokers with it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol.topics import valid_device_id

from .errors import FwToolError, UsageError
from .keys import KeyLayout

VALIDITY = dt.timedelta(days=365)
TIMEOUT_S = 15.0
CRL_TYPE = "application/pkix-crl"


def cert_identity(der: bytes) -> tuple[str, str]:
    """(sha256 fingerprint hex, serial hex) of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    return cert.fingerprint(hashes.SHA256()).hex(), format(cert.serial_number, "x")


@dataclass(frozen=True)
class CrlResult:
    number: int
    serials: dict[str, str]  # device -> serial hex
    der: bytes


def build_crl(home: Path, serials: dict[str, str], number: int,
              now: dt.datetime | None = None) -> bytes:
    """A DER CRL revoking `serials` (device -> hex), signed with the device CA key."""
    layout = KeyLayout.of_home(home)
    try:
        key = serialization.load_pem_private_key(layout.ca_key_pem.read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate(layout.ca_cert_pem.read_bytes())
    except (OSError, ValueError) as exc:
        raise FwToolError(f"the device CA key and certificate are needed in {layout.root}: "
                          f"{exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise FwToolError(f"{layout.ca_key_pem} is not the device CA's EC key")
    now = now or dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + VALIDITY)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   key.public_key()), critical=False))
    for serial in sorted(set(serials.values())):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
            .revocation_date(now - dt.timedelta(minutes=5)).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _check(resp: httpx.Response, what: str) -> None:
    if resp.status_code in (401, 403):
        raise FwToolError(f"the cloud refused the token for {what} ({resp.status_code}): a"
                          " factory or admin token is needed")
    if not resp.is_success:
        raise FwToolError(f"{what}: the cloud answered {resp.status_code}: {resp.text[:300]}")


def sign_and_upload(home: Path, cloud_url: str, token: str,
                    client: httpx.Client | None = None) -> CrlResult:
    if not cloud_url.startswith(("http://", "https://")):
        raise UsageError(f"cloud must be an http or https URL, got {cloud_url!r}")
    base = cloud_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_S)
    try:
        resp = http.get(base + "/api/v1/revocations", headers=headers)
        _check(resp, "the revocation list")
        revoked: list[dict[str, Any]] = resp.json()
        latest = http.get(base + "/api/v1/gateway/crl", headers=headers)
        number = 0
        if latest.status_code == 200:
            number = int(latest.headers.get("X-Fleetloop-Crl-Number", "0"))
        elif latest.status_code != 404:
            _check(latest, "the newest CRL")
        serials, missing = _serials(home, revoked)
        if missing:
            raise FwToolError("no certificate serial known for revoked device(s) "
                              + ", ".join(missing) + ": enrol them with their certificate, or"
                              " keep their keys in this home")
        number = max(number + 1, int(time.time()))
        der = build_crl(home, serials, number)
        resp = http.put(base + "/api/v1/revocations/crl", content=der,
                        headers={**headers, "Content-Type": CRL_TYPE})
        _check(resp, "the CRL upload")
    except httpx.HTTPError as exc:
        raise FwToolError(f"cannot reach the cloud at {cloud_url}: {exc}") from exc
    finally:
        if own:
            http.close()
    return CrlResult(number, serials, der)


def _serials(home: Path, revoked: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    layout = KeyLayout.of_home(home)
    serials: dict[str, str] = {}
    missing: list[str] = []
    for item in revoked:
        device = str(item.get("device"))
        serial = item.get("cert_serial")
        if not serial and valid_device_id(device):
            cert = layout.device_cert_der(device)
            if cert.is_file():
                serial = cert_identity(cert.read_bytes())[1]
        if serial:
            serials[device] = str(serial)
        else:
            missing.append(device)
    return serials, missing
