"""The dashboard's pages: the fleet overview, a page per device (plots of its metrics and
vitals over a time range), per gateway, per customer and per cohort, the audit log, and
their one stylesheet. Server-rendered HTML, no scripts (cloud.render, cloud.pages,
cloud.fleet_pages). Every page shows who is signed in and a sign-out form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from cloud import fleet_pages, pages, render
from cloud.access import Principal, Role
from cloud.deps import (
    DEV_PRINCIPAL,
    DashboardDep,
    DbDep,
    DeviceOr404,
    GatewayOr404,
    NowDep,
    SettingsDep,
    dashboard_access,
)
from cloud.errors import Forbidden
from cloud.openapi import errors
from cloud.services import audit as audit_service
from cloud.services import cohorts as cohort_service
from cloud.services import customers as customer_service
from cloud.services import drift as drift_service
from cloud.services import registry, series, telemetry
from cloud.services.gateways import GatewayStatus
from cloud.store import DeviceRow, Store
from protocol.bounds import MAX_TIME_MS

router = APIRouter(tags=["dashboard"])

RangeMs = Annotated[int | None, Query(ge=0, le=MAX_TIME_MS)]
Metric = Annotated[str | None, Query(min_length=1, max_length=32, pattern="^[a-z0-9_]+$")]
Filter = Annotated[str | None, Query(max_length=200)]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


def viewer_of(request: Request, principal: Principal) -> render.Viewer | None:
    """The navigation bar's user: None for an open dev dashboard without a session."""
    if principal is DEV_PRINCIPAL:
        return None
    session = getattr(request.state, "session", None)
    return render.Viewer(principal.name, str(principal.role),
                         None if session is None else str(session.csrf))


def dashboard_of(*roles: Role) -> Callable[..., render.Viewer | None]:
    """A dashboard page that only some roles (and admin) may see: the same sign-in as every
    page (cloud.deps.dashboard_access), then 403 for the other roles."""
    accepted = frozenset(roles) | {Role.ADMIN}

    def dependency(request: Request, settings: SettingsDep, store: DbDep, now_ms: NowDep
                   ) -> render.Viewer | None:
        principal = dashboard_access(request, settings, store, now_ms)
        if principal is not DEV_PRINCIPAL and principal.role not in accepted:
            raise Forbidden(f"role {principal.role} may not see this page (roles: "
                            + ", ".join(sorted(accepted)) + ")")
        return viewer_of(request, principal)

    dependency.roles = accepted  # type: ignore[attr-defined]  # OpenAPI x-roles
    return dependency


def _viewer(request: Request, principal: DashboardDep) -> render.Viewer | None:
    return viewer_of(request, principal)


ViewerDep = Annotated[render.Viewer | None, Depends(_viewer)]
FleetViewer = Annotated[render.Viewer | None,
                        Depends(dashboard_of(Role.OPS, Role.TECHNICIAN, Role.ANALYST))]
AuditViewer = Annotated[render.Viewer | None, Depends(dashboard_of(Role.OPS))]


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers=render.SECURITY_HEADERS)


@router.get("/", response_class=HTMLResponse)
def dashboard(viewer: ViewerDep, store: DbDep, now_ms: NowDep, settings: SettingsDep
              ) -> HTMLResponse:
    """The fleet at a glance; refreshes itself. Sign in at /login (a session cookie); without
    a session: 303 to /login (dev mode: open)."""
    overview = telemetry.overview(store)
    states = drift_service.fleet_states(store, now_ms, overview.devices)
    return _html(render.dashboard(overview, states, now_ms, settings.dashboard_refresh_s,
                                  settings.dev, viewer))


@router.get("/devices/{device_id}", response_class=HTMLResponse, responses=errors(400))
def device_page(
    viewer: ViewerDep,
    device: DeviceOr404,
    store: DbDep,
    now_ms: NowDep,
    from_ms: RangeMs = None,
    to_ms: RangeMs = None,
) -> HTMLResponse:
    """A device's page: a plot per metric and per vital over [from_ms, to_ms) (device
    clock; default: the last day of its data), links that zoom and pan, last values, consent,
    config and drift. 400 for a range series.Window refuses; 404 unknown device."""
    default = series.default_window(device, now_ms)
    if from_ms is None and to_ms is None:
        window = default
    else:
        width = default.to_ms - default.from_ms
        end = to_ms if to_ms is not None else (from_ms or 0) + width
        start = from_ms if from_ms is not None else max(0, end - width)
        window = series.Window(start, end, series.DEFAULT_POINTS)
    data = pages.device_page_data(store, device, window, now_ms)
    return _html(pages.device_page(data, now_ms, viewer))


@router.get("/gateways/{gateway_id}", response_class=HTMLResponse)
def gateway_page(
    viewer: ViewerDep, gateway: GatewayOr404, store: DbDep, now_ms: NowDep
) -> HTMLResponse:
    """A gateway's page: its chain head, its gaps (refused batches, newest first) and the
    devices assigned to it. 404 unknown gateway."""
    gaps = store.gaps(gateway.id, 100)
    status = GatewayStatus(gateway, store.gap_counts().get(gateway.id, 0), gaps[:5])
    devices = [d for d in store.list_devices() if d.gateway == gateway.id]
    states = drift_service.fleet_states(store, now_ms, devices)
    return _html(pages.gateway_page(status, gaps, devices, states, viewer))


@router.get("/customers", response_class=HTMLResponse)
def customers_page(viewer: FleetViewer, store: DbDep) -> HTMLResponse:
    """Every customer account: its products and whether it cancelled."""
    products: dict[str, int] = {}
    for reg in store.registries():
        if reg.customer is not None:
            products[reg.customer] = products.get(reg.customer, 0) + 1
    return _html(fleet_pages.customers_page(store.list_customers(), products, viewer))


@router.get("/customers/{customer_id}", response_class=HTMLResponse, responses=errors(400))
def customer_page(
    customer_id: str, viewer: FleetViewer, store: DbDep, now_ms: NowDep,
    metric: Metric = None, from_ms: RangeMs = None, to_ms: RangeMs = None,
) -> HTMLResponse:
    """A customer's page: their products (online, consent tier, last seen, firmware, drift,
    registry status), cancelled or not, and a plot of one metric over all their products
    (`metric`, [from_ms, to_ms); default: the first metric, the last day of their data).
    404 unknown customer; 400 a range the series refuse."""
    customer = registry.get_customer(store, customer_id)
    devices = customer_service.devices(store, customer.id)
    return _html(_group(store, devices, now_ms, metric, from_ms, to_ms,
                        lambda states, regs, plot: fleet_pages.customer_page(
                            customer, devices, states, regs, plot, viewer)))


@router.get("/cohorts", response_class=HTMLResponse)
def cohorts_page(viewer: FleetViewer, store: DbDep) -> HTMLResponse:
    """Every cohort: its rule or list, priority and number of active members."""
    rows = store.list_cohorts()
    facts = cohort_service.fleet_facts(store)
    sizes = {c.name: len(cohort_service.members(store, c, facts)) for c in rows}
    return _html(fleet_pages.cohorts_page(rows, sizes, viewer))


@router.get("/cohorts/{name}", response_class=HTMLResponse, responses=errors(400))
def cohort_page(
    name: Name, viewer: FleetViewer, store: DbDep, now_ms: NowDep,
    metric: Metric = None, from_ms: RangeMs = None, to_ms: RangeMs = None,
) -> HTMLResponse:
    """A cohort's page: its rule or list, its active members (online, consent, last seen,
    firmware, drift) and a plot of one metric over the members (as the customer page). 404
    unknown cohort."""
    cohort = cohort_service.get(store, name)
    ids = set(cohort_service.members(store, cohort))
    devices = [d for d in store.list_devices() if d.id in ids]
    return _html(_group(store, devices, now_ms, metric, from_ms, to_ms,
                        lambda states, regs, plot: fleet_pages.cohort_page(
                            cohort, devices, states, regs, plot, viewer)))


def _group(store: Store, devices: list[DeviceRow], now_ms: int, metric: str | None,
           from_ms: int | None, to_ms: int | None, page: Callable[..., str]) -> str:
    states = drift_service.fleet_states(store, now_ms, devices)
    regs = {r.device: r for r in store.registries()}
    window = fleet_pages.group_window(devices, now_ms, from_ms, to_ms)
    return page(states, regs, fleet_pages.group_plot(store, devices, metric, window))


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    viewer: AuditViewer, store: DbDep,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    actor: Filter = None, action: Filter = None, target: Filter = None,
    outcome: Annotated[str | None, Query(pattern="^(ok|refused)$")] = None,
) -> HTMLResponse:
    """The audit log, newest first, a page at a time ("older" pages on with `before`),
    filtered by exact actor, action, target or outcome (each a link on the page)."""
    filters = {"actor": actor, "action": action, "target": target, "outcome": outcome}
    rows = audit_service.page(store, fleet_pages.AUDIT_PAGE, before, actor, action, target,
                              outcome)
    return _html(fleet_pages.audit_page(rows, filters, fleet_pages.AUDIT_PAGE, viewer))


@router.get(f"/{render.STYLESHEET}", include_in_schema=False)
def stylesheet() -> Response:
    """The dashboard's stylesheet (no data in it: served without a token)."""
    return Response(render.stylesheet(), media_type="text/css",
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=300"})
