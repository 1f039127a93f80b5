"""Outcome KPIs, health scores and the churn-risk list (cloud.loop), computed on read as of
`at_ms` (default: now). Analysts and ops read everything; a customer reads their own
products' KPIs and health."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, StreamingResponse

from cloud import health_pages, render
from cloud.access import Principal, Role, requires
from cloud.deps import DbDep, NowDep
from cloud.health_schemas import (
    ChurnList,
    CustomerReport,
    DeviceHealthPublic,
    HealthReport,
    KpisPublic,
    customer_public,
    device_public,
    kpis_public,
    risk_public,
)
from cloud.loop import health
from cloud.loop.churn import Risk
from cloud.loop.kpis import device_kpis
from cloud.routers.dashboard import dashboard_of
from cloud.routers.devices import scope_of
from cloud.services import customers
from cloud.services.customers import _cell as cell
from protocol.bounds import MAX_TIME_MS

router = APIRouter(tags=["health"])
READ = [Depends(requires(Role.OPS, Role.ANALYST))]
Reader = Annotated[Principal, Depends(requires(Role.OPS, Role.ANALYST, Role.CUSTOMER))]
Customer = Annotated[Principal, Depends(requires(Role.CUSTOMER, admin=False))]
AtMs = Annotated[int | None, Query(ge=1, le=MAX_TIME_MS,
                                   description="as of this moment (ms, record time); default now")]
HealthViewer = Annotated[render.Viewer | None, Depends(dashboard_of(Role.OPS, Role.ANALYST))]
CSV_COLUMNS = ("device", "customer", "product", "kind", "score", "since_ms", "reason")


@router.get("/api/v1/devices/{device_id}/kpis", response_model=KpisPublic)
def get_kpis(device_id: str, caller: Reader, store: DbDep, now_ms: NowDep,
             at_ms: AtMs = None) -> KpisPublic:
    """The device's outcome KPIs as of `at_ms`: bike rides per week, active minutes, power
    and its trend, heart rate; mirror sessions per week, streaks, time of day, reps per
    session; engine EGT margin, efficiency trends, predicted remaining cycles and the
    maintenance alert. A KPI whose data the device's consent does not allow is "not
    computed", with the tier it needs. A customer sees only their own products (404 for any
    other); 404 unknown device."""
    device = customers.own_device(store, scope_of(caller), device_id)
    return kpis_public(device_kpis(store, device, at_ms or now_ms))


@router.get("/api/v1/health/devices", response_model=HealthReport, dependencies=READ)
def device_health(store: DbDep, now_ms: NowDep, at_ms: AtMs = None) -> HealthReport:
    """Every active device's health score (0-100) as of `at_ms`, with its components
    (recency, frequency, outcome, device, consent: each 0-100 with the reason) and its
    churn-risk reason when it is listed."""
    rep = health.report(store, at_ms or now_ms)
    return HealthReport(at_ms=rep.at_ms, devices=[device_public(d) for d in rep.devices])


@router.get("/api/v1/health/customers", response_model=CustomerReport, dependencies=READ)
def customer_health(store: DbDep, now_ms: NowDep, at_ms: AtMs = None) -> CustomerReport:
    """Every customer's health score as of `at_ms`: the mean of their devices' scores, each
    component the mean of theirs, and the weakest device."""
    rep = health.report(store, at_ms or now_ms)
    return CustomerReport(at_ms=rep.at_ms, customers=[customer_public(c)
                                                      for c in rep.customers()])


def churn_csv(risks: list[Risk]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in risks:
        writer.writerow([cell(r.device), cell(r.customer), cell(r.product), r.kind,
                         "" if r.score is None else r.score,
                         "" if r.since_ms is None else r.since_ms, cell(r.reason)])
    yield buf.getvalue()


@router.get("/api/v1/health/churn", dependencies=READ, response_model=None,
            responses={200: {"model": ChurnList,
                             "content": {"application/json": {}, "text/csv": {}},
                             "description": "the list as JSON, or CSV with format=csv"}})
def churn_list(store: DbDep, now_ms: NowDep, at_ms: AtMs = None,
               format: Literal["json", "csv"] = "json") -> StreamingResponse | ChurnList:
    """The churn-risk list as of `at_ms`: riders and mirror users whose activity is declining
    (with the rates before and now and since when), those with no activity for 14 days, and
    those whose consent hides their usage, each with its reason; cancelled customers left
    out. `format=csv` gives the same as a CSV download (columns device, customer, product,
    kind, score, since_ms, reason)."""
    rep = health.report(store, at_ms or now_ms)
    risks = rep.risks()
    if format == "csv":
        return StreamingResponse(churn_csv(risks), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition":
                                          'attachment; filename="churn-risk.csv"'})
    return ChurnList(at_ms=rep.at_ms, risks=[risk_public(r) for r in risks])


@router.get("/api/v1/me/health", response_model=list[DeviceHealthPublic])
def my_health(caller: Customer, store: DbDep, now_ms: NowDep,
              at_ms: AtMs = None) -> list[DeviceHealthPublic]:
    """The caller's own products' health scores with their components (a token that is no
    customer's has none)."""
    rep = health.report(store, at_ms or now_ms, customers.devices(store, caller.customer))
    return [device_public(d) for d in rep.devices]


@router.get("/health", response_class=HTMLResponse, tags=["dashboard"])
def health_page(viewer: HealthViewer, store: DbDep, now_ms: NowDep,
                at_ms: AtMs = None) -> HTMLResponse:
    """The dashboard's health page as of `at_ms`: the fleet's rides, sessions and flights per
    week (plots), the churn-risk list with reasons, customers and devices by health score with
    the components."""
    rep = health.report(store, at_ms or now_ms)
    return HTMLResponse(health_pages.health_page(rep, viewer), headers=render.SECURITY_HEADERS)
