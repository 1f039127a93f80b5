"""Time series for plots and the series API: a device's metric, or one of its vitals, over a
time range [from_ms, to_ms) on record time (the device's clock, `t`), downsampled on the
server to at most `points` buckets of equal width, each with count, min, max and mean.

Metrics are bucketed by the store (Store.metric_buckets reads only the chunks of records that
reach into the range, through their time index); vitals are few per device
(cloud.services.vitals keeps the newest 1000), so they are read for the range and bucketed
here with the same arithmetic. A cohort's series
is the merge of its devices' series (`cohort_series`: the registry's cohorts resolve to a list
of device ids and call it).

A metric name the device never sent is an empty series, not an error: an analyst asking
for `heart_rate` of a bike whose customer keeps consent at `usage` gets "nothing in this
range", the same as for a quiet week. A name that no record could carry (protocol.record's
rule: 1-32 of [a-z0-9_]) is InvalidRequest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloud.errors import InvalidRequest
from cloud.store import Bucket, DeviceRow, HeartbeatRow, Store
from protocol import metrics as units
from protocol.bounds import MAX_TIME_MS
from protocol.record import valid_metric_name

MAX_POINTS = 2000
DEFAULT_POINTS = 300
MIN_RANGE_MS = 1000
MAX_RANGE_MS = 400 * 86_400_000  # a bit over a year in one plot
DEFAULT_RANGE_MS = 86_400_000
MAX_VITALS = 1000  # what cloud.services.vitals keeps per device


@dataclass(frozen=True)
class Window:
    """A validated time range and resolution: buckets of bucket_ms from from_ms."""

    from_ms: int
    to_ms: int
    points: int

    def __post_init__(self) -> None:
        if not 0 <= self.from_ms < self.to_ms <= MAX_TIME_MS:
            raise InvalidRequest(
                f"time range must have 0 <= from_ms < to_ms <= {MAX_TIME_MS}"
                f" (got from_ms={self.from_ms}, to_ms={self.to_ms})"
            )
        width = self.to_ms - self.from_ms
        if not MIN_RANGE_MS <= width <= MAX_RANGE_MS:
            raise InvalidRequest(
                f"time range must span {MIN_RANGE_MS} ms to {MAX_RANGE_MS} ms (got {width} ms)"
            )
        if not 1 <= self.points <= MAX_POINTS:
            raise InvalidRequest(f"points must be in 1..{MAX_POINTS} (got {self.points})")

    @property
    def bucket_ms(self) -> int:
        """The smallest whole-ms width that covers the range in `points` buckets."""
        return -(-(self.to_ms - self.from_ms) // self.points)


@dataclass(frozen=True)
class Series:
    name: str
    unit: str
    window: Window
    buckets: list[Bucket]

    @property
    def count(self) -> int:
        return sum(b.count for b in self.buckets)


def check_metric(name: str) -> str:
    if not valid_metric_name(name):
        raise InvalidRequest(f"metric must be 1-32 characters of a-z, 0-9 and _ (got {name!r:.40})")
    return name


def metric_series(store: Store, device: DeviceRow, metric: str, window: Window) -> Series:
    """The device's metric in the window, bucketed by the store."""
    buckets = store.metric_buckets(
        device.id, check_metric(metric), window.from_ms, window.to_ms, window.bucket_ms
    )
    return Series(metric, units.unit(device.product, metric), window, buckets)


def bucketise(points: Iterable[tuple[int, float]], window: Window) -> list[Bucket]:
    """(t, value) pairs into the window's buckets, with Store.metric_buckets's arithmetic."""
    groups: dict[int, list[float]] = {}
    width = window.bucket_ms
    for t, value in points:
        if window.from_ms <= t < window.to_ms:
            groups.setdefault((t - window.from_ms) // width, []).append(value)
    return [
        Bucket(start_ms=window.from_ms + index * width, count=len(values), min=min(values),
               max=max(values), mean=sum(values) / len(values))
        for index, values in sorted(groups.items())
    ]


def _numeric(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def vitals_series(store: Store, device: DeviceRow, field: str, window: Window) -> Series:
    """One vitals field (protocol.state: heap_low, buffer_bytes, reconnects, rssi, ...) of the
    device's states in the window."""
    rows = store.heartbeats_between(device.id, window.from_ms, window.to_ms, MAX_VITALS)
    return vitals_from_rows(rows, field, window)


def vitals_from_rows(rows: Sequence[HeartbeatRow], field: str, window: Window) -> Series:
    """Like vitals_series over rows already read (a page plots several fields of one read)."""
    pairs = [(r.t, v) for r in rows if (v := _numeric(r.body.get(field))) is not None]
    return Series(field, units.VITALS_UNITS.get(field, ""), window, bucketise(pairs, window))


def merge(series: Sequence[Series], name: str, unit: str, window: Window) -> Series:
    """Several devices' series of one window as one: per bucket the smallest min, the largest
    max, and the mean over all their values (weighted by count)."""
    by_start: dict[int, list[Bucket]] = {}
    for s in series:
        for b in s.buckets:
            by_start.setdefault(b.start_ms, []).append(b)
    merged = []
    for start, group in sorted(by_start.items()):
        count = sum(b.count for b in group)
        merged.append(Bucket(start_ms=start, count=count, min=min(b.min for b in group),
                             max=max(b.max for b in group),
                             mean=sum(b.mean * b.count for b in group) / count))
    return Series(name, unit, window, merged)


def cohort_series(
    store: Store, device_ids: Sequence[str], metric: str, window: Window
) -> Series:
    """One metric over a group of devices (a cohort, a customer's products): their buckets
    merged. Unknown ids contribute nothing; the unit is the first known device's."""
    check_metric(metric)
    parts = []
    unit = ""
    for device_id in device_ids:
        device = store.get_device(device_id)
        if device is None:
            continue
        part = metric_series(store, device, metric, window)
        unit = unit or part.unit
        parts.append(part)
    return merge(parts, metric, unit, window)


def default_window(device: DeviceRow, now_ms: int, points: int = DEFAULT_POINTS) -> Window:
    """The last day of the device's data: ending just after its newest timestamp (the
    device's clock), or now when it sent none."""
    end = min(MAX_TIME_MS, (device.last_seen_ms if device.last_seen_ms is not None else now_ms) + 1)
    end = max(end, DEFAULT_RANGE_MS)
    return Window(end - DEFAULT_RANGE_MS, end, points)


def plotted_metrics(device: DeviceRow) -> list[str]:
    """The metrics a device page plots: its product's (in the units table's order), then any
    other name among its last values, sorted."""
    known = list(units.metrics(device.product))
    extra = sorted(name for name in device.last_metrics if name not in known)
    return known + [name for name in extra if valid_metric_name(name)]
