"""The FastAPI application: `create_app(settings)` wires settings, store, signer and routers,
and translates the cloud's exceptions into HTTP statuses (the only place that does).

Also here, for every endpoint at once: the audit entry of a write refused to a known caller,
the OpenAPI document's roles and error answers (cloud.openapi), OPTIONS and 405 answers that
list exactly the methods a path has, and the bound on JSON request bodies (cloud.http).
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from cloud import errors, http, openapi
from cloud.access import Principal
from cloud.db import DatabaseError, open_database
from cloud.deps import DbDep
from cloud.routers import (
    aggregates,
    audit,
    bundles,
    cohorts,
    configs,
    customers,
    dashboard,
    devices,
    gateway_updates,
    gateway_watch,
    gateways,
    health,
    ingest,
    me,
    policies,
    profiles,
    quarantine,
    revocations,
    rollout_pages,
    rollouts,
    series,
    session,
    tokens,
)
from cloud.schemas import Health
from cloud.services import audit as audit_service
from cloud.services import policy_judge, progress
from cloud.services.config import ConfigSigner
from cloud.settings import Settings
from cloud.ticker import Job, Ticker

STATUS: dict[type[errors.CloudError], int] = {
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Refused: 422,
    errors.InvalidSettings: 422,
    errors.UnknownReference: 422,
    errors.Unavailable: 503,
    DatabaseError: 503,
}


def status_for(exc: errors.CloudError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# path parameter -> the kind of target it names in the audit log
TARGETS = {"device_id": "device", "gateway_id": "gateway", "token_id": "token"}


def _target(request: Request, route: BaseRoute | None) -> str:
    for name, value in request.path_params.items():
        return f"{TARGETS.get(name, name.removesuffix('_id'))}:{value}"
    return getattr(route, "path", request.url.path)


def audit_refusal(request: Request, code: int, reason: str) -> None:
    """Record a write (POST/PUT/PATCH/DELETE) refused with a 4xx to a caller whose token was
    valid. Unauthenticated refusals are not recorded: an attacker without a token must not be
    able to fill the table. A failure to record does not change the answer."""
    principal = getattr(request.state, "principal", None)
    if request.method not in WRITES or not 400 <= code < 500 or not isinstance(principal, Principal):
        return
    route = request.scope.get("route")
    extra = getattr(route, "openapi_extra", None) or {}
    action = extra.get("x-audit-action") or f"{request.method} {getattr(route, 'path', '?')}"
    now_ms = round(request.app.state.clock() * 1000)
    try:
        with request.app.state.db.connection() as store:
            audit_service.record_now(store, principal, action, _target(request, route), now_ms,
                                     outcome=audit_service.REFUSED, reason=f"{code}: {reason}")
    except errors.CloudError:
        pass


async def _cloud_error(request: Request, exc: Exception) -> JSONResponse | RedirectResponse:
    if not isinstance(exc, errors.CloudError):  # registered for CloudError only
        raise exc
    if isinstance(exc, errors.LoginRequired):
        return RedirectResponse("/login", status_code=303, headers={"Cache-Control": "no-store"})
    code = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    audit_refusal(request, code, str(exc))
    body: dict[str, object] = {"detail": str(exc)}
    if isinstance(exc, errors.Refused):
        body["reasons"] = exc.reasons
    return JSONResponse(body, status_code=code, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (unknown path, 413 from the body bound): {"detail": text}."""
    if not isinstance(exc, StarletteHTTPException):  # registered for it only
        raise exc
    audit_refusal(request, exc.status_code, str(exc.detail))
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


async def _invalid_body(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why, but never the input: a body refused for one field may carry a
    secret in another (a device's record key) that must not come back in an answer or a log."""
    if not isinstance(exc, RequestValidationError):  # registered for it only
        raise exc
    errors_out = [
        {k: v for k, v in error.items() if k not in ("input", "ctx", "url")}
        for error in exc.errors()
    ]
    audit_refusal(request, 422, "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors_out))
    return JSONResponse({"detail": jsonable_encoder(errors_out)}, status_code=422)


# Collect the youngest generation after this many new container objects instead of 700: an
# ingested batch makes a few per record, every one freed by reference counting when its request
# ends, and at 700 the collector walked each batch's objects again and again (a third of the
# ingest time in docs/benchmarks.md). What the app holds from its start is frozen out of the
# collections altogether.
GC_GEN0_THRESHOLD = 100_000


def _tune_gc() -> None:
    """Once per process (an app started again in the same process, as tests do, freezes
    nothing more)."""
    _, gen1, gen2 = gc.get_threshold()
    if gc.get_freeze_count() == 0:
        gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def jobs(settings: Settings) -> list[Job]:
    """What the server does by itself on a clock (cloud.ticker); tick_s 0 turns it off."""
    if settings.tick_s <= 0:
        return []
    return [Job("rollouts", settings.tick_s, progress.evaluate),
            Job("policies", settings.tick_s,
                policy_judge.job(ConfigSigner(settings.config_key_path)))]


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """Build the app. Raises SettingsError for settings it must refuse (e.g. the default
    admin token outside dev mode). No I/O happens before the app starts."""
    settings.check()
    db = open_database(settings.database)
    ticker = Ticker(jobs(settings), db.connection, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        _tune_gc()
        ticker.start()
        try:
            yield
        finally:
            ticker.stop()
            db.close()

    app = FastAPI(
        title="fleetloop cloud",
        version="0.1.0",
        summary="Verifies and stores signed gateway batches, signs device config, shows the fleet.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.signer = ConfigSigner(settings.config_key_path)
    app.state.clock = clock
    app.state.ticker = ticker
    app.add_exception_handler(errors.CloudError, _cloud_error)
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    for module in (gateways, devices, series, aggregates, configs, ingest, quarantine, tokens,
                   audit, session, dashboard):
        app.include_router(module.router)
    app.include_router(customers.router)
    app.include_router(cohorts.router)
    app.include_router(profiles.router)
    app.include_router(me.router)
    app.include_router(revocations.router)
    app.include_router(health.router)  # KPIs, health, churn risk (cloud.loop)
    app.include_router(gateway_watch.router)  # long-poll for gateways
    for module in (bundles, rollouts, gateway_updates, rollout_pages):  # updates
        app.include_router(module.router)
    app.include_router(policies.router)  # policies as experiments
    app.include_router(policies.pages)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz(store: DbDep) -> Health:
        """Liveness and database reachability."""
        store.ping()
        return Health(ok=True)

    openapi.install(app)
    app.add_middleware(http.Methods, routes=lambda: list(openapi.api_routes(app.routes)))
    return app
