"""The gateways' aggregate records of a device (cloud.services.aggregates)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from cloud.access import Principal, Role, requires
from cloud.aggregate_store import AggregateRow, ModeRow
from cloud.deps import DbDep, DeviceOr404, GatewayDep, NowDep
from cloud.openapi import errors
from cloud.services import aggregates as service
from cloud.services import audit
from protocol.bounds import MAX_TIME_MS

router = APIRouter(tags=["aggregates"])
DATA = [Depends(requires(Role.OPS, Role.ANALYST))]  # like telemetry: usage data
READ = [Depends(requires(Role.OPS, Role.TECHNICIAN, Role.ANALYST))]


class AggregatePublic(BaseModel):
    incarnation: int
    start: int = Field(description="window start (ms, device clock)")
    window_s: int
    n: int = Field(description="records the gateway folded into the window")
    first_seq: int
    last_seq: int
    product: str
    raw: str = Field(description="'sent': the raw records came too; 'local': they stayed at "
                                 "the gateway")
    m: dict[str, dict[str, Any]] = Field(
        description="per metric: n, min, max, mean, last (what the device's consent allows)")
    gateway: str


class RawKeptPublic(BaseModel):
    records: int = Field(description="raw records summarised here whose raw form stayed at the "
                                     "gateway (the product's configuration there)")
    windows: int
    gateways: list[str] = Field(description="the gateways that keep them")


class AggregatePage(BaseModel):
    device: str
    raw_kept_at_gateway: RawKeptPublic
    aggregates: list[AggregatePublic] = Field(description="oldest first")


def public(row: AggregateRow) -> AggregatePublic:
    return AggregatePublic(incarnation=row.incarnation, start=row.start_ms,
                           window_s=row.window_s, n=row.n, first_seq=row.first_seq,
                           last_seq=row.last_seq, product=row.product, raw=row.raw, m=row.m,
                           gateway=row.gateway)


@router.get("/api/v1/devices/{device_id}/aggregates", response_model=AggregatePage,
            dependencies=DATA)
def get_aggregates(
    device: DeviceOr404,
    store: DbDep,
    from_ms: Annotated[int, Query(ge=0, le=MAX_TIME_MS,
                                  description="windows starting at or after (ms)")] = 0,
    to_ms: Annotated[int, Query(ge=1, le=MAX_TIME_MS,
                                description="windows starting before (ms)")] = MAX_TIME_MS,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 500,
) -> AggregatePage:
    """The windows the device's gateway summarised (count, min, max, mean, last per metric),
    oldest first, and how many of its raw records stayed at the gateway by the product's
    configuration there (so a short telemetry listing is not taken for lost data)."""
    kept = service.raw_kept(store, device.id)
    return AggregatePage(
        device=device.id,
        raw_kept_at_gateway=RawKeptPublic(records=kept.records, windows=kept.windows,
                                          gateways=list(kept.gateways)),
        aggregates=[public(r) for r in service.page(store, device.id, from_ms, to_ms, limit)],
    )


class ModePut(BaseModel):
    mode: str = Field(description="raw, N (windows of N s next to the raw records) or N:local "
                                  "(windows only; raw records stay at the gateway), N in "
                                  "1..86400", examples=["60"])


class ModePublic(BaseModel):
    product: str
    mode: str
    updated_ms: int
    updated_by: str


class Modes(BaseModel):
    products: dict[str, str] = Field(description="product -> mode; a product not listed is raw")


def _mode(row: ModeRow) -> ModePublic:
    return ModePublic(product=row.product, mode=row.mode, updated_ms=row.updated_ms,
                      updated_by=row.updated_by)


@router.put("/api/v1/aggregation/{product}", response_model=ModePublic, responses=errors(422),
            openapi_extra={"x-audit-action": "aggregation.put"})
def put_mode(
    product: str, body: ModePut, store: DbDep, now_ms: NowDep,
    caller: Annotated[Principal, Depends(requires(Role.OPS))],
) -> ModePublic:
    """What the gateways do with a product's records from now on: pass them through raw,
    summarise them over windows next to them, or summarise them and keep them at the gateway
    (the cloud then cannot check the devices' tags for that data). Every gateway fetches it
    within its poll interval, unless it was started with its own `aggregate` setting."""
    with store.transaction():
        before, row = service.set_mode(store, product, body.mode, now_ms, caller.name)
        audit.record(store, caller, "aggregation.put", f"product:{row.product}", now_ms,
                     before=None if before is None else {"mode": before.mode},
                     after={"mode": row.mode})
    return _mode(row)


@router.get("/api/v1/aggregation", response_model=list[ModePublic], dependencies=READ)
def get_modes(store: DbDep) -> list[ModePublic]:
    """Every product's mode as cloud ops set it (a product not listed is raw)."""
    return [_mode(r) for r in service.modes(store)]


@router.get("/api/v1/gateway/aggregation", response_model=Modes)
def gateway_modes(gateway: GatewayDep, store: DbDep) -> Modes:
    """The modes for the calling gateway (gateway.aggregate_feed), product -> mode."""
    return Modes(products={r.product: r.mode for r in service.modes(store)})
