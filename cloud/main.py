"""The FastAPI application: `create_app(settings)` wires settings, store, signer and routers,
and translates the cloud's exceptions into HTTP statuses (the only place that does)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cloud import errors
from cloud.db import Database, DatabaseError
from cloud.deps import DbDep
from cloud.routers import (
    cohorts,
    configs,
    customers,
    dashboard,
    devices,
    gateways,
    ingest,
    me,
    profiles,
    quarantine,
    revocations,
)
from cloud.schemas import Health
from cloud.services.config import ConfigSigner
from cloud.settings import Settings

STATUS: dict[type[errors.CloudError], int] = {
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
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


async def _cloud_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, errors.CloudError):  # registered for CloudError only
        raise exc
    code = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)


async def _invalid_body(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why, but never the input: a body refused for one field may carry a
    secret in another (a device's record key) that must not come back in an answer or a log."""
    if not isinstance(exc, RequestValidationError):  # registered for it only
        raise exc
    errors_out = [
        {k: v for k, v in error.items() if k not in ("input", "ctx", "url")}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(errors_out)}, status_code=422)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """Build the app. Raises SettingsError for settings it must refuse (e.g. the default
    admin token outside dev mode). No I/O happens before the app starts."""
    settings.check()
    db = Database(settings.db_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        try:
            yield
        finally:
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
    app.add_exception_handler(errors.CloudError, _cloud_error)
    app.add_exception_handler(RequestValidationError, _invalid_body)

    for module in (gateways, devices, configs, ingest, quarantine, dashboard):
        app.include_router(module.router)
    app.include_router(customers.router)
    app.include_router(cohorts.router)
    app.include_router(profiles.router)
    app.include_router(me.router)
    app.include_router(revocations.router)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz(store: DbDep) -> Health:
        """Liveness and database reachability."""
        store.ping()
        return Health(ok=True)

    return app
