"""GET /api/v1/gateway/watch: a gateway's long-poll (cloud.services.watch)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from cloud.access import Role, admission, bearer_scheme
from cloud.context import NowDep, SettingsDep
from cloud.errors import Unauthorized
from cloud.services import watch as service
from cloud.store import GatewayRow

router = APIRouter(tags=["configs"])
_GATEWAY = admission(Role.GATEWAY)


class GatewayWatch(BaseModel):
    config: int = Field(description="the newest config revision")
    configs: bool = Field(description="configs of this gateway's devices newer than `config` "
                          "you sent wait: GET /api/v1/gateway/configs?after=<your revision>")
    revocations: str = Field(description="a tag of the revoked devices and the CRL; it "
                             "changed when it differs from the one you sent")
    offers: str | None = Field(None, description="when you sent `offers`: a tag of your "
                               "devices' update offers; they changed when it differs from the "
                               "one you sent: GET /api/v1/gateway/updates")


def briefly_authenticated_gateway(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    settings: SettingsDep,
    now_ms: NowDep,
) -> GatewayRow:
    """The calling gateway, checked on a connection given back at once: a held request keeps
    no database connection (unlike DbDep, which lives as long as the request)."""
    with request.app.state.db.connection() as store:
        principal = _GATEWAY(request, credentials, store, settings, now_ms)
        gateway = store.get_gateway(principal.gateway or "")
    if gateway is None:
        raise Unauthorized("invalid token")
    return gateway


briefly_authenticated_gateway.roles = _GATEWAY.roles  # type: ignore[attr-defined]  # x-roles


def _changes(request: Request) -> service.Changes:
    state = request.app.state
    changes = getattr(state, "watch_changes", None)
    if changes is None:
        db = state.db

        def read() -> service.Stamp:
            with db.connection() as store:
                return service.stamp(store)

        changes = state.watch_changes = service.Changes(read)
    return changes


@router.get("/api/v1/gateway/watch", response_model=GatewayWatch)
async def watch(
    request: Request,
    gateway: Annotated[GatewayRow, Depends(briefly_authenticated_gateway)],
    config: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    revocations: Annotated[str | None, Query(max_length=64)] = None,
    offers: Annotated[str | None, Query(max_length=64)] = None,
    wait: Annotated[float, Query(ge=0, le=service.MAX_WAIT_S)] = 0.0,
) -> GatewayWatch:
    """Answers as soon as configs of the calling gateway's devices newer than revision
    `config` wait (when given), or the revocations tag differs from `revocations` (when
    given), or the tag of its devices' update offers differs from `offers` (when given; send
    an empty one to learn it), or after `wait` seconds (at most 60) with what is current. A
    gateway asks again at once: it hears of a change within about a second without polling,
    and it works behind NAT."""
    db = request.app.state.db

    def current() -> service.Look:
        with db.connection() as store:
            return service.look(store, gateway.id, config, offers is not None)

    def changed(seen: service.Look) -> bool:
        return (config is not None and seen.configs) or \
            (revocations is not None and seen.revocations != revocations) or \
            (offers is not None and seen.offers != offers)

    deadline = time.monotonic() + wait
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        while True:
            seen_at = time.monotonic()
            seen = await run_in_threadpool(current)
            left = deadline - time.monotonic()
            if changed(seen) or left <= 0 or gone.done():
                return GatewayWatch(config=seen.config, configs=seen.configs,
                                    revocations=seen.revocations, offers=seen.offers)
            waiting = asyncio.ensure_future(_changes(request).wait(seen.stamp, seen_at, left))
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
    finally:
        gone.cancel()


async def _disconnected(request: Request) -> None:
    """Return when the client went away (a stopped gateway): its hold ends at once instead of
    keeping the server (and a restart of it) waiting."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
