"""Enrolment: register a device and its record key with the cloud, as the factory does once per
device after `fleetloop fw keygen`.

    POST <cloud>/api/v1/devices  {"id": ID, "product": P, "record_key": "<base64 of 32 bytes>",
                                  "cert_fingerprint": "<sha256 hex of the certificate's DER>",
                                  "cert_serial": "<hex>", "customer": C, "hw_rev": R}
    Authorization: Bearer <factory (or admin) token>

The certificate's fingerprint and serial are what a revocation later names (the serial goes on
the device CA's CRL, `fleetloop fw crl`); customer and hardware revision only when given.

201 (registered) or 200 (already registered with this same key) are success; 409 means the cloud
holds a different record key for this id, which fwtool never overwrites: the cloud would refuse
every record the device tags with its own key, so the operator has to decide (docs/factory.md).
The key travels only to the cloud, over the admin API; the gateway never sees it.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from .errors import FwToolError, UsageError
from .keys import KeyLayout, check_id, read_record_key
from .provision import PROFILES
from .revoke import cert_identity

TIMEOUT_S = 15.0


class EnrolConflict(FwToolError):
    """The cloud already holds another record key for this device."""


def admin_token(token_file: Path | None, env_token: str | None) -> str:
    """The admin token from --token-file, else from FLEETLOOP_ADMIN_TOKEN; UsageError if none."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the admin token file {token_file}: {exc.strerror}") from exc
        if not token:
            raise UsageError(f"the admin token file {token_file} is empty")
        return token
    if env_token and env_token.strip():
        return env_token.strip()
    raise UsageError("an admin token is needed: set FLEETLOOP_ADMIN_TOKEN or pass --token-file")


def enrol(home: Path, device_id: str, product: str, cloud_url: str, token: str,
          client: httpx.Client | None = None, *, customer: str | None = None,
          hw_rev: str | None = None) -> int:
    """Register ``device_id`` and its record key with the cloud; return the HTTP status (201 new,
    200 already there with this key). EnrolConflict on 409, FwToolError on anything else."""
    check_id(device_id, "device")
    if product not in PROFILES:
        raise UsageError(f"unknown product {product!r}: choose one of {', '.join(PROFILES)}")
    if not cloud_url.startswith(("http://", "https://")):
        raise UsageError(f"cloud must be an http or https URL, got {cloud_url!r}")
    path = KeyLayout.of_home(Path(home)).device_record_key(device_id)
    if not path.is_file():
        raise FwToolError(f"no record key for {device_id!r} at {path}; run "
                          f"`fleetloop fw keygen --home {home} --device {device_id}` first")
    body: dict[str, str] = {"id": device_id, "product": product,
                            "record_key": base64.b64encode(read_record_key(path)).decode()}
    cert = KeyLayout.of_home(Path(home)).device_cert_der(device_id)
    if cert.is_file():
        body["cert_fingerprint"], body["cert_serial"] = cert_identity(cert.read_bytes())
    if customer is not None:
        body["customer"] = customer
    if hw_rev is not None:
        body["hw_rev"] = hw_rev
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_S)
    try:
        resp = http.post(cloud_url.rstrip("/") + "/api/v1/devices", json=body,
                         headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise FwToolError(f"cannot reach the cloud at {cloud_url}: {exc}") from exc
    finally:
        if own:
            http.close()
    if resp.status_code in (200, 201):
        return resp.status_code
    if resp.status_code == 409:
        raise EnrolConflict(f"the cloud already holds a different record key for {device_id!r}; "
                            "it keeps that one (see docs/factory.md, Enrolment)")
    if resp.status_code in (401, 403):
        raise FwToolError(f"the cloud refused the token ({resp.status_code}): enrolment needs"
                          " a factory or admin token")
    raise FwToolError(f"the cloud answered {resp.status_code}: {resp.text[:300]}")
