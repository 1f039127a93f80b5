"""Downsampled time series of a device's metrics and vitals (cloud.services.series)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from cloud.access import Role, requires
from cloud.deps import DbDep, DeviceOr404
from cloud.openapi import errors
from cloud.services import series as service
from protocol.bounds import MAX_TIME_MS

router = APIRouter(prefix="/api/v1/devices", tags=["series"])
DATA = [Depends(requires(Role.OPS, Role.ANALYST))]
FLEET = [Depends(requires(Role.OPS, Role.TECHNICIAN, Role.ANALYST))]

FromMs = Annotated[int, Query(ge=0, le=MAX_TIME_MS, description="range start (ms, device clock), inclusive")]
ToMs = Annotated[int, Query(ge=1, le=MAX_TIME_MS, description="range end (ms, device clock), exclusive")]
Points = Annotated[int, Query(ge=1, le=service.MAX_POINTS,
                              description="at most this many buckets of equal width")]


class BucketPublic(BaseModel):
    t: int = Field(description="bucket start (ms); the bucket spans [t, t + bucket_ms)")
    count: int
    min: float
    max: float
    mean: float


class LastValue(BaseModel):
    t: int | None = Field(description="the device's newest timestamp (ms)")
    value: float | int | bool


class SeriesPublic(BaseModel):
    device: str
    name: str = Field(description="the metric or vitals field")
    unit: str = Field(description="its unit (protocol.metrics); empty for counts and flags")
    from_ms: int
    to_ms: int
    bucket_ms: int
    count: int = Field(description="values in the range")
    buckets: list[BucketPublic] = Field(description="non-empty buckets, oldest first")
    last: LastValue | None = Field(
        default=None, description="the device's last value of the metric (metrics only)"
    )


def public(device_id: str, s: service.Series, last: LastValue | None = None) -> SeriesPublic:
    return SeriesPublic(
        device=device_id, name=s.name, unit=s.unit, from_ms=s.window.from_ms,
        to_ms=s.window.to_ms, bucket_ms=s.window.bucket_ms, count=s.count,
        buckets=[BucketPublic(t=b.start_ms, count=b.count, min=b.min, max=b.max, mean=b.mean)
                 for b in s.buckets],
        last=last,
    )


@router.get("/{device_id}/series", response_model=SeriesPublic, dependencies=DATA,
            responses=errors(400))
def get_series(
    device: DeviceOr404,
    store: DbDep,
    metric: Annotated[str, Query(min_length=1, max_length=32, pattern="^[a-z0-9_]+$")],
    from_ms: FromMs,
    to_ms: ToMs,
    points: Points = service.DEFAULT_POINTS,
) -> SeriesPublic:
    """The device's `metric` over [from_ms, to_ms) on record time, downsampled on the server
    to at most `points` buckets (1..2000): count, min, max and mean per non-empty bucket,
    oldest first; booleans count as 0/1. A metric the device never sent in the range is an
    empty series (200). 400 when from_ms >= to_ms or the range spans less than a second or
    more than 400 days; 404 unknown device; 422 a malformed parameter."""
    window = service.Window(from_ms, to_ms, points)
    s = service.metric_series(store, device, metric, window)
    value = device.last_metrics.get(metric)
    last = None if value is None else LastValue(t=device.last_seen_ms, value=value)
    return public(device.id, s, last)


@router.get("/{device_id}/vitals/series", response_model=SeriesPublic, dependencies=FLEET,
            responses=errors(400))
def get_vitals_series(
    device: DeviceOr404,
    store: DbDep,
    field: Annotated[str, Query(min_length=1, max_length=32, pattern="^[a-z0-9_]+$",
                                description="a vitals field: heap_low, buffer_bytes, ...")],
    from_ms: FromMs,
    to_ms: ToMs,
    points: Points = service.DEFAULT_POINTS,
) -> SeriesPublic:
    """One vitals `field` of the device's states (heap_low, heap_free, buffer_bytes,
    buffered, reconnects, rssi, uptime_s, ...) over [from_ms, to_ms) on the device's clock,
    bucketed like the metric series. The cloud keeps each device's newest 1000 states, so
    older ranges come back empty. Same errors as the metric series."""
    window = service.Window(from_ms, to_ms, points)
    return public(device.id, service.vitals_series(store, device, field, window))
