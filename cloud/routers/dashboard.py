from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from cloud import render
from cloud.deps import DashboardDep, DbDep, NowDep, SettingsDep
from cloud.services import telemetry

router = APIRouter(tags=["dashboard"])


@router.get("/", response_class=HTMLResponse)
def dashboard(_: DashboardDep, store: DbDep, now_ms: NowDep, settings: SettingsDep) -> HTMLResponse:
    """The fleet at a glance; refreshes itself. Sign in at /login (a session cookie); without
    a session: 303 to /login (dev mode: open)."""
    html = render.dashboard(
        telemetry.overview(store), now_ms, settings.dashboard_refresh_s, settings.dev
    )
    return HTMLResponse(html, headers=render.SECURITY_HEADERS)
