"""Who may call what: the roles, the caller as the cloud knows it, and the dependency every
endpoint declares its roles with.

    @router.get("/things", dependencies=[Depends(requires(Role.OPS, Role.TECHNICIAN))])
    def things(...): ...

or, when the endpoint needs to know who calls (audit, a customer's own products):

    def put_thing(caller: Annotated[Principal, Depends(requires(Role.OPS))], ...): ...

`admin` is allowed wherever a staff role is (ops, technician, analyst, factory) and on the
customer's endpoints, never on the gateway's: a gateway endpoint knows its caller's chain.
A missing or unknown token is 401 (an expired or revoked one says so); a valid token of another
role is 403.

Who is known (`authenticate`): the bootstrap admin (FLEETLOOP_ADMIN_TOKEN, when set), the
database's API tokens (cloud.services.tokens, `flt_...`) and the gateways' tokens. The
dependency leaves the caller on `request.state.principal` as soon as it is known (also when
it is then refused with 403), so the app can audit refused writes of known callers.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud.context import DbDep, NowDep, SettingsDep, reads_inline
from cloud.errors import Forbidden, Unauthorized
from cloud.services import gateways as gateway_service
from cloud.services import tokens as token_service
from cloud.settings import Settings
from cloud.store import Store


class Role(StrEnum):
    OPS = "ops"  # config, rollouts, policies
    TECHNICIAN = "technician"  # read fleet state, diagnostics
    ANALYST = "analyst"  # read telemetry and insights
    FACTORY = "factory"  # enrol devices
    GATEWAY = "gateway"  # ingest, pull its work
    ADMIN = "admin"  # tokens, and every staff endpoint
    CUSTOMER = "customer"  # the product's owner: their own products only


STAFF = frozenset({Role.OPS, Role.TECHNICIAN, Role.ANALYST, Role.FACTORY})


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    role: Role
    name: str  # a token's name, a gateway's id, or "bootstrap admin"
    token_id: int | None = None  # the token row, None for the bootstrap admin and gateways
    customer: str | None = None  # the customer a customer-role token belongs to
    gateway: str | None = None  # the gateway a gateway-role token belongs to


# auto_error=False: a missing token is our 401 with our message; the scheme still shows in
# the OpenAPI document of every endpoint that depends on it.
bearer_scheme = HTTPBearer(auto_error=False, description="a fleetloop API token")


BOOTSTRAP_ADMIN = "bootstrap admin"


def authenticate(
    settings: Settings, store: Store, token: str, now_ms: int | None = None
) -> Principal | None:
    """The principal a bearer token stands for, or None when nobody issued it.
    Raises Unauthorized ("token expired", "token revoked") for an API token that no longer
    counts."""
    if settings.admin_token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return Principal(role=Role.ADMIN, name=BOOTSTRAP_ADMIN)
    now = round(time.time() * 1000) if now_ms is None else now_ms
    row = token_service.authenticate(store, token, now)
    if row is not None:
        return Principal(role=Role(row.role), name=row.name, token_id=row.id,
                         customer=row.customer)
    gateway = gateway_service.authenticate(store, token)
    if gateway is not None:
        return Principal(role=Role.GATEWAY, name=gateway.id, gateway=gateway.id)
    return None


def allowed(roles: frozenset[Role], *, admin: bool = True) -> frozenset[Role]:
    """The roles an endpoint declaring `roles` accepts: admin joins unless it is the
    gateway's alone, or the endpoint says `admin=False` (the customer's own account: staff
    have no "own" products)."""
    return roles if roles == {Role.GATEWAY} or not admin else roles | {Role.ADMIN}


def admission(*roles: Role, admin: bool = True) -> Callable[..., Principal]:
    """The check `requires` makes, as a plain function of (request, credentials, store,
    settings, now_ms): for a caller that lends its own connection (a held long-poll)."""
    accepted = allowed(frozenset(roles), admin=admin)
    names = ", ".join(sorted(accepted))

    def admit(
        request: Request, credentials: HTTPAuthorizationCredentials | None, store: Store,
        settings: Settings, now_ms: int,
    ) -> Principal:
        if credentials is None or not credentials.credentials.strip():
            raise Unauthorized(f"token required (Authorization: Bearer <token>; roles: {names})")
        principal = authenticate(settings, store, credentials.credentials.strip(), now_ms)
        if principal is None:
            raise Unauthorized("invalid token")
        request.state.principal = principal
        if principal.role not in accepted:
            raise Forbidden(f"role {principal.role} may not do this (roles: {names})")
        return principal

    admit.roles = accepted  # type: ignore[attr-defined]  # read by the OpenAPI and tests
    return admit


def requires(*roles: Role, admin: bool = True) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets in the given roles (see `allowed`) and returns the caller."""
    admit = admission(*roles, admin=admin)

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
        store: DbDep,
        settings: SettingsDep,
        now_ms: NowDep,
    ) -> Principal:
        if credentials is None or (
            reads_inline(request)
            and not token_service.is_api_token(credentials.credentials.strip())
        ):
            # no token, or the bootstrap admin's or a gateway's: looked up, nothing written
            # (so every batch a gateway sends skips a thread hop)
            return admit(request, credentials, store, settings, now_ms)
        # an API token's use is written down now and then: a write may wait, in a thread
        return await run_in_threadpool(admit, request, credentials, store, settings, now_ms)

    dependency.roles = admit.roles  # type: ignore[attr-defined]  # read by the OpenAPI and tests
    return dependency
