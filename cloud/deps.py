"""FastAPI dependencies as Annotated aliases: one place for auth, lookups-or-404 and the store."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from cloud.access import Principal, Role, requires
from cloud.errors import Forbidden, TooLarge, Unauthorized
from cloud.services import gateways as gateway_service
from cloud.services import telemetry as telemetry_service
from cloud.services.config import ConfigSigner
from cloud.settings import Settings
from cloud.store import DeviceRow, GatewayRow, Store
from protocol.batch import HEADER_GATEWAY, MAX_COMPRESSED_BYTES, MAX_GAP_BYTES


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Iterator[Store]:
    with request.app.state.db.connection() as store:
        yield store


def get_signer(request: Request) -> ConfigSigner:
    signer: ConfigSigner = request.app.state.signer
    return signer


def get_now_ms(request: Request) -> int:
    seconds: float = request.app.state.clock()
    return round(seconds * 1000)


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Store, Depends(get_store)]
SignerDep = Annotated[ConfigSigner, Depends(get_signer)]
NowDep = Annotated[int, Depends(get_now_ms)]


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_gateway(
    caller: Annotated[Principal, Depends(requires(Role.GATEWAY))], store: DbDep
) -> GatewayRow:
    """The gateway whose token made the request."""
    gateway = store.get_gateway(caller.gateway or "")
    if gateway is None:
        raise Unauthorized("invalid token")
    return gateway


GatewayDep = Annotated[GatewayRow, Depends(current_gateway)]


def batch_gateway(
    gateway: GatewayDep,
    claimed: Annotated[str | None, Header(alias=HEADER_GATEWAY)] = None,
) -> GatewayRow:
    """The token's gateway, which must be the one the X-Fleetloop-Gateway header names."""
    if claimed != gateway.id:
        raise Forbidden(f"{HEADER_GATEWAY} {claimed!r} does not match the token's gateway")
    return gateway


BatchGatewayDep = Annotated[GatewayRow, Depends(batch_gateway)]


async def _raw_body(request: Request, what: str, limit: int) -> bytes:
    """The raw request body, refused (413) past `limit` bytes while reading."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what} larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def batch_body(request: Request) -> bytes:
    """A batch body, at most protocol.batch.MAX_COMPRESSED_BYTES."""
    return await _raw_body(request, "batch", MAX_COMPRESSED_BYTES)


async def gap_body(request: Request) -> bytes:
    """A gap body, at most protocol.batch.MAX_GAP_BYTES."""
    return await _raw_body(request, "gap", MAX_GAP_BYTES)


BatchBodyDep = Annotated[bytes, Depends(batch_body)]
GapBodyDep = Annotated[bytes, Depends(gap_body)]


def device_or_404(device_id: str, store: DbDep) -> DeviceRow:
    return telemetry_service.get_device(store, device_id)


DeviceOr404 = Annotated[DeviceRow, Depends(device_or_404)]


def gateway_or_404(gateway_id: str, store: DbDep) -> GatewayRow:
    return gateway_service.get_gateway(store, gateway_id)


GatewayOr404 = Annotated[GatewayRow, Depends(gateway_or_404)]


def dashboard_access(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> None:
    """Open in dev mode; otherwise the admin token as ?token= or Authorization: Bearer."""
    if settings.dev:
        return
    for given in (token, bearer_token(request)):
        if given is not None and hmac.compare_digest(given.encode(), settings.admin_token.encode()):
            return
    raise Unauthorized("dashboard needs the admin token: /?token=<admin token>")


DashboardDep = Annotated[None, Depends(dashboard_access)]
