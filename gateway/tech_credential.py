"""The technician's local credential: a random token in a file under the gateway's home.

The status endpoint (and its /metrics) answers only requests that carry it as
`Authorization: Bearer <token>`; `diag` reads the file. Whoever can read the file is, by
definition, someone the gateway's operating-system user trusts: it is mode 0600, owned by
that user. It is made at the gateway's first start and kept (a site's scrape config holds it).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from gateway.errors import DiagError, GatewayError

FILE_NAME = "technician.token"
TOKEN_BYTES = 32


def token_path(gateway_dir: Path) -> Path:
    return gateway_dir / FILE_NAME


def ensure(path: Path) -> str:
    """The token in `path`; a new one (mode 0600) when the file is missing or empty. Written
    whole or not at all (a temporary file renamed), so a full disk never leaves an empty
    credential behind; GatewayError when it cannot be written."""
    try:
        return read(path)
    except DiagError:
        if path.is_file() and path.stat().st_size > 0:
            raise  # there but unreadable: never replace a credential a site may rely on
    token = secrets.token_urlsafe(TOKEN_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise GatewayError(f"cannot write the technician credential {path}: "
                           f"{exc.strerror or exc}") from exc
    return token


def read(path: Path) -> str:
    """The token; DiagError naming the file when it cannot be read or is empty."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise DiagError(f"no technician credential at {path}: the gateway makes it at its first "
                        "start (start it once with `fleetloop gateway run`)") from None
    except OSError as exc:
        raise DiagError(f"cannot read the technician credential {path} ({exc.strerror}): run "
                        "diag as the user the gateway runs as") from exc
    if not token:
        raise DiagError(f"the technician credential {path} is empty: delete it and restart the "
                        "gateway to get a new one")
    return token


def header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def header_for(gateway_dir: Path) -> dict[str, str]:
    """The Authorization header of the credential under `gateway_dir` (DiagError if none)."""
    return header(read(token_path(gateway_dir)))


def allowed(authorization: str | None, token: str) -> bool:
    """True when an Authorization header carries `token` (compared in constant time)."""
    if not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[len("Bearer "):].strip().encode(), token.encode())
