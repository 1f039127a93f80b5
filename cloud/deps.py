"""FastAPI dependencies as Annotated aliases: one place for auth, lookups-or-404 and the store."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from cloud.access import STAFF, Principal, Role, authenticate, requires
from cloud.context import DbDep, NowDep, SettingsDep, SignerDep, reads_inline  # noqa: F401 (re-exported)
from cloud.errors import Forbidden, LoginRequired, TooLarge, Unauthorized
from cloud.services import gateways as gateway_service
from cloud.services import sessions as session_service
from cloud.services import telemetry as telemetry_service
from cloud.store import DeviceRow, GatewayRow, Store
from protocol.batch import HEADER_GATEWAY, MAX_COMPRESSED_BYTES, MAX_GAP_BYTES


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_gateway(
    request: Request, caller: Annotated[Principal, Depends(requires(Role.GATEWAY))],
    store: DbDep,
) -> GatewayRow:
    """The gateway whose token made the request (a read: on the event loop where the store
    answers reads without waiting, cloud.context.reads_inline)."""
    if reads_inline(request):
        gateway = store.get_gateway(caller.gateway or "")
    else:
        gateway = await run_in_threadpool(store.get_gateway, caller.gateway or "")
    if gateway is None:
        raise Unauthorized("invalid token")
    return gateway


GatewayDep = Annotated[GatewayRow, Depends(current_gateway)]


async def batch_gateway(
    gateway: GatewayDep,
    claimed: Annotated[str | None, Header(alias=HEADER_GATEWAY)] = None,
) -> GatewayRow:
    """The token's gateway, which must be the one the X-Fleetloop-Gateway header names."""
    if claimed != gateway.id:
        raise Forbidden(f"{HEADER_GATEWAY} {claimed!r} does not match the token's gateway")
    return gateway


BatchGatewayDep = Annotated[GatewayRow, Depends(batch_gateway)]


async def raw_body(request: Request, what: str, limit: int) -> bytes:
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
    return await raw_body(request, "batch", MAX_COMPRESSED_BYTES)


async def gap_body(request: Request) -> bytes:
    """A gap body, at most protocol.batch.MAX_GAP_BYTES."""
    return await raw_body(request, "gap", MAX_GAP_BYTES)


BatchBodyDep = Annotated[bytes, Depends(batch_body)]
GapBodyDep = Annotated[bytes, Depends(gap_body)]


def device_or_404(device_id: str, store: DbDep) -> DeviceRow:
    return telemetry_service.get_device(store, device_id)


DeviceOr404 = Annotated[DeviceRow, Depends(device_or_404)]


def gateway_or_404(gateway_id: str, store: DbDep) -> GatewayRow:
    return gateway_service.get_gateway(store, gateway_id)


GatewayOr404 = Annotated[GatewayRow, Depends(gateway_or_404)]


# The dashboard: staff roles and admin, signed in with a session cookie (cloud.routers.session)
# or, for scripts, a bearer token; never a token in a URL. Customers are not let in (yet).
DASHBOARD_ROLES = STAFF | {Role.ADMIN}
DEV_PRINCIPAL = Principal(role=Role.ADMIN, name="dev mode")
MAX_FORM_BYTES = 16 * 1024


def _session_principal(request: Request, store: Store, now_ms: int) -> Principal | None:
    row = session_service.find(store, request.cookies.get(session_service.COOKIE), now_ms)
    if row is None:
        return None
    request.state.session = row
    return Principal(role=Role(row.role), name=row.name, token_id=row.token_id)


def dashboard_access(
    request: Request, settings: SettingsDep, store: DbDep, now_ms: NowDep
) -> Principal:
    """The dashboard's caller: a session (cookie), else a bearer token, else in dev mode an
    open dashboard. Without any of them: a redirect (303) to /login. Roles other than staff
    and admin: 403."""
    principal = _session_principal(request, store, now_ms)
    if principal is None:
        token = bearer_token(request)
        if token is not None:
            principal = authenticate(settings, store, token, now_ms)
            if principal is None:
                raise Unauthorized("invalid token")
        elif "authorization" in request.headers:
            # An API client, not a browser: it gets an answer, not the sign-in page.
            raise Unauthorized("malformed Authorization header (expected: Bearer <token>)")
    if principal is None:
        if settings.dev:
            return DEV_PRINCIPAL
        raise LoginRequired("sign in at /login")
    request.state.principal = principal
    if principal.role not in DASHBOARD_ROLES:
        raise Forbidden(f"role {principal.role} has no dashboard")
    return principal


dashboard_access.roles = DASHBOARD_ROLES  # type: ignore[attr-defined]  # OpenAPI x-roles

DashboardDep = Annotated[Principal, Depends(dashboard_access)]


def csrf_token(request: Request, _: DashboardDep) -> str | None:
    """The CSRF value the page's forms carry in the field `csrf` (None without a session:
    a bearer caller needs none, and an open dev dashboard has no session to tie it to)."""
    row = getattr(request.state, "session", None)
    return None if row is None else str(row.csrf)


CsrfTokenDep = Annotated[str | None, Depends(csrf_token)]


async def dashboard_form(request: Request, caller: DashboardDep) -> dict[str, str]:
    """A dashboard form POST (application/x-www-form-urlencoded), its CSRF field checked
    against the session (403 when it does not match). A bearer caller needs no CSRF field;
    an open dev dashboard without a session may not post (403: sign in first)."""
    body = await raw_body(request, "form", MAX_FORM_BYTES)
    try:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise Forbidden("form is not UTF-8") from exc
    row = getattr(request.state, "session", None)
    if row is not None:
        if not session_service.same(row.csrf, form.get(session_service.CSRF_FIELD)):
            raise Forbidden("form expired or forged (CSRF check failed): reload the page")
    elif caller is DEV_PRINCIPAL:
        raise Forbidden("sign in at /login to change anything")
    return form


FormDep = Annotated[dict[str, str], Depends(dashboard_form)]
