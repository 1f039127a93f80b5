"""One authenticated GET of a JSON answer from the cloud, with the errors an operator reads in
the status and in `diag` ("no gateway token in ...", "cloud unreachable: ...", "<what> request
answered 503: ...", "<what> response is not JSON"), raised as the caller's own error class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from gateway.errors import GatewayError
from gateway.uplink import read_token


def get_json(http: httpx.Client, url: str, token_path: Path, what: str,
             error: type[GatewayError], params: dict[str, Any] | None = None) -> Any:
    token = read_token(token_path)
    if token is None:
        raise error(f"no gateway token in {token_path}")
    try:
        resp = http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise error(f"cloud unreachable: {type(exc).__name__}: {exc}") from exc
    if not resp.is_success:
        raise error(f"{what} request answered {resp.status_code}: {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError as exc:
        raise error(f"{what} response is not JSON") from exc
