"""Register this gateway with the cloud: send the public half of its batch-signing key, keep
the token the cloud returns (shown once) in the token file, readable by its owner only."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import EnrollError
from gateway.keys import GatewayKeys
from gateway.settings import Settings

REGISTER_PATH = "/api/v1/gateways"


def write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)  # a gateway reading the file never sees half a token


def register(settings: Settings, admin_token: str, timeout_s: float = 10.0) -> Path:
    """POST the gateway's public key; returns the token file written."""
    keys = GatewayKeys.under(settings.home, settings.gateway_id)
    public = keys.load_batch_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    body = {"id": settings.gateway_id, "public_key": base64.b64encode(public).decode()}
    try:
        resp = httpx.post(settings.cloud_url.rstrip("/") + REGISTER_PATH, json=body,
                          headers={"Authorization": f"Bearer {admin_token}"}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise EnrollError(f"cannot reach the cloud at {settings.cloud_url}: {exc}") from exc
    if resp.status_code not in (200, 201):
        try:
            reason = resp.json().get("detail", resp.text)
        except ValueError:
            reason = resp.text
        raise EnrollError(f"the cloud refused the registration ({resp.status_code}): {reason}")
    token = resp.json().get("token")
    if not isinstance(token, str) or not token:
        raise EnrollError("the cloud's answer carries no token")
    path = settings.token_path
    write_token(path, token)
    return path
