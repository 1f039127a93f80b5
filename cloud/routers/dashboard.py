"""The dashboard's pages: the fleet overview, a page per device (plots of its metrics and
vitals over a time range) and per gateway, and their one stylesheet. Server-rendered HTML,
no scripts (cloud.render, cloud.pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from cloud import pages, render
from cloud.deps import DashboardDep, DbDep, DeviceOr404, GatewayOr404, NowDep, SettingsDep
from cloud.services import series, telemetry
from cloud.services.gateways import GatewayStatus
from protocol.bounds import MAX_TIME_MS

router = APIRouter(tags=["dashboard"])

RangeMs = Annotated[int | None, Query(ge=0, le=MAX_TIME_MS)]


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers=render.SECURITY_HEADERS)


@router.get("/", response_class=HTMLResponse)
def dashboard(_: DashboardDep, store: DbDep, now_ms: NowDep, settings: SettingsDep) -> HTMLResponse:
    """The fleet at a glance; refreshes itself. Sign in at /login (a session cookie); without
    a session: 303 to /login (dev mode: open)."""
    return _html(render.dashboard(
        telemetry.overview(store), now_ms, settings.dashboard_refresh_s, settings.dev
    ))


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    _: DashboardDep,
    device: DeviceOr404,
    store: DbDep,
    now_ms: NowDep,
    from_ms: RangeMs = None,
    to_ms: RangeMs = None,
) -> HTMLResponse:
    """A device's page: a plot per metric and per vital over [from_ms, to_ms) (device
    clock; default: the last day of its data), links that zoom and pan, last values, consent
    and config. 400 for a range series.Window refuses; 404 unknown device."""
    default = series.default_window(device, now_ms)
    if from_ms is None and to_ms is None:
        window = default
    else:
        width = default.to_ms - default.from_ms
        end = to_ms if to_ms is not None else (from_ms or 0) + width
        start = from_ms if from_ms is not None else max(0, end - width)
        window = series.Window(start, end, series.DEFAULT_POINTS)
    return _html(pages.device_page(pages.device_page_data(store, device, window), now_ms))


@router.get("/gateways/{gateway_id}", response_class=HTMLResponse)
def gateway_page(
    _: DashboardDep, gateway: GatewayOr404, store: DbDep, now_ms: NowDep
) -> HTMLResponse:
    """A gateway's page: its chain head, its gaps (refused batches, newest first) and the
    devices assigned to it. 404 unknown gateway."""
    gaps = store.gaps(gateway.id, 100)
    status = GatewayStatus(gateway, store.gap_counts().get(gateway.id, 0), gaps[:5])
    devices = [d for d in store.list_devices() if d.gateway == gateway.id]
    return _html(pages.gateway_page(status, gaps, devices, now_ms))


@router.get(f"/{render.STYLESHEET}", include_in_schema=False)
def stylesheet() -> Response:
    """The dashboard's stylesheet (no data in it: served without a token)."""
    return Response(render.stylesheet(), media_type="text/css",
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"})
