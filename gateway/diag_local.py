"""Facts `diag` reads on the box itself, running gateway or not: certificate expiry, disk
space, and this box's clock against the cloud's (the Date header of one cheap request)."""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from gateway.keys import GatewayKeys
from gateway.tech_identity import TechIdentity


def certificate_paths(home: Path, gateway_id: str) -> dict[str, Path]:
    keys = GatewayKeys.under(home, gateway_id)
    return {"device CA": keys.ca_cert, "broker": keys.broker_cert,
            "gateway MQTT": keys.mqtt_cert,
            "technician": TechIdentity.under(home, gateway_id).cert}


def certificate(name: str, path: Path, now: dt.datetime) -> dict[str, Any] | None:
    """{name, path, not_after, days_left} or {name, path, error}; None when the file is absent
    and optional (the technician's)."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        return None if name == "technician" else {"name": name, "path": str(path),
                                                  "error": "missing"}
    except (OSError, ValueError) as exc:
        return {"name": name, "path": str(path), "error": f"unreadable ({exc})"}
    end = cert.not_valid_after_utc
    return {"name": name, "path": str(path), "not_after": end.isoformat(),
            "days_left": round((end - now).total_seconds() / 86400, 1)}


def certificates(home: Path, gateway_id: str) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    found = (certificate(n, p, now) for n, p in certificate_paths(home, gateway_id).items())
    return [c for c in found if c is not None]


def disk(path: Path) -> dict[str, Any] | None:
    """Space on the filesystem holding `path` (its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    return {"path": str(path), "free_bytes": free, "total_bytes": st.f_blocks * st.f_frsize,
            "full": free == 0}


def clock_offset(cloud_url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """This box's clock minus the cloud's (seconds, +-1 s: a Date header has whole seconds),
    or None when the cloud does not answer. Any answer carries a Date, even a 404."""
    parts = urlsplit(cloud_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    base = f"{parts.scheme}://{parts.netloc}"
    try:
        before = time.time()
        resp = httpx.get(base + "/healthz", timeout=timeout_s)
        after = time.time()
    except httpx.HTTPError:
        return None
    date = resp.headers.get("date")
    if not date:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
    return {"offset_s": round((before + after) / 2 - theirs, 1), "source": base}
