"""The KPIs an experiment reads: which ones a product has (the loop's own, cloud.loop.kpis and
engine_kpis, not a copy of their names), a device's KPI over any window of record time, and
whether a device meets a policy's condition.

The catalogue is what the KPI functions themselves return for a device that allows nothing
(consent `essential`): every KPI of the product, with its unit and the consent tier it needs,
refused before anything is read. A KPI without a unit is a word (the time of day someone
trains, the maintenance alert) or not measured at all (an engine's vibration): an experiment
cannot compare those, so they are not offered.

Over a window [from, to) of record time:
- rides, sessions or flights per week, and active minutes per week: counted over the window
  and divided by its length in weeks (a device idle all window scores 0, not "no data");
- mean power, mean heart rate and reps per session: over the window's activities (no activity:
  no value, and the device drops out of that evaluation);
- anything else (streaks, trends, EGT margin, predicted remaining cycles): the KPI as the loop
  computes it as of the window's end. Its "before" is then the KPI as of the window's start,
  so the outcome is how far it moved over the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from cloud.loop import activity
from cloud.loop import kpis as k
from cloud.loop.activity import WEEK_MS, Activity
from cloud.store import DeviceRow, Store
from protocol import consent as tiers

PRODUCTS = ("bike", "mirror", "engine")
OPS = ("<", "<=", ">", ">=", "fell_by", "rose_by")
RELATIVE = ("fell_by", "rose_by")
RELATIVE_WEEKS = k.RECENT_WEEKS  # fell_by/rose_by: the last 4 weeks against the 4 before


@dataclass(frozen=True)
class KpiInfo:
    name: str
    unit: str
    tier: str  # the consent tier a device must allow for it to be read


class _NoStore:
    """Stands where a store would be while the catalogue is read: nothing may be asked of it
    (consent `essential` refuses every KPI before it reads)."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"the KPI catalogue read the store ({name})")


@cache
def catalogue(product: str) -> dict[str, KpiInfo]:
    """The comparable KPIs of a product, by name; {} for a product without KPIs."""
    if product not in PRODUCTS:
        return {}
    device = DeviceRow(id="catalogue", product=product, created_ms=0)
    empty = k.History(0, 0, [], None)
    store = _NoStore()
    if product == "bike":
        found = k.bike_kpis(store, device, empty, tiers.ESSENTIAL)  # type: ignore[arg-type]
    elif product == "mirror":
        found = k.mirror_kpis(store, device, empty, tiers.ESSENTIAL)  # type: ignore[arg-type]
    else:
        from cloud.loop import engine_kpis  # numpy and the model load only for engines

        found = engine_kpis.compute(store, device, 0,  # type: ignore[arg-type]
                                    tiers.ESSENTIAL).kpis
    return {x.name: KpiInfo(x.name, x.unit, x.tier) for x in found if x.unit}


def permits(device: DeviceRow, info: KpiInfo) -> bool:
    from cloud.services import consent as consent_service

    return k.permits(consent_service.effective(device), info.tier)


def _weeks(from_ms: int, to_ms: int) -> float:
    return max(1, to_ms - from_ms) / WEEK_MS


def _acts(store: Store, device: DeviceRow, metric: str, from_ms: int, to_ms: int
          ) -> list[Activity]:
    """Activities that start inside the window (one running across its start belongs to the
    window before)."""
    low = max(0, from_ms - activity.GAP_MS - activity.MINUTE_MS)
    return [a for a in activity.read(store, device.id, metric, low, to_ms)
            if a.start_ms >= from_ms]


def _weighted_mean(acts: list[Activity]) -> float | None:
    total = sum(a.records for a in acts)
    return sum(a.mean * a.records for a in acts) / total if total else None


def _usage_metric(product: str) -> str | None:
    return k.ACTIVITY_METRIC.get(product)


def _engine_flights(store: Store, device: DeviceRow, from_ms: int, to_ms: int) -> float:
    from cloud.loop import engine_kpis

    rows = engine_kpis.flights(store, device, to_ms)
    return sum(1 for r in rows if r.t >= from_ms) / _weeks(from_ms, to_ms)


WindowFn = Callable[[Store, DeviceRow, int, int], float | None]


def _window_fn(product: str, name: str) -> WindowFn | None:
    """How `name` is measured over a window, when it is one of the per-window KPIs."""
    word = k.ACTIVITY_WORD.get(product, "")
    metric = _usage_metric(product)
    if product == "engine" and name == "flights_per_week":
        return _engine_flights
    if metric is None:
        return None
    if name == f"{word}_per_week":
        return lambda s, d, a, b: len(_acts(s, d, metric, a, b)) / _weeks(a, b)
    if name == "active_minutes_per_week":
        return lambda s, d, a, b: sum(x.minutes for x in _acts(s, d, metric, a, b)) / _weeks(a, b)
    if name == "power_mean_w":
        return lambda s, d, a, b: _weighted_mean(_acts(s, d, "power", a, b))
    if name == "heart_rate_mean_bpm":
        return lambda s, d, a, b: _weighted_mean(_acts(s, d, "heart_rate", a, b))
    if name == "reps_per_session":
        def reps(s: Store, d: DeviceRow, a: int, b: int) -> float | None:
            acts = _acts(s, d, "reps", a, b)
            return sum(x.max for x in acts) / len(acts) if acts else None
        return reps
    return None


def _number(value: float | int | str | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def snapshot(store: Store, device: DeviceRow, name: str, at_ms: int) -> float | None:
    """The KPI as the loop computes it as of at_ms (None: no value)."""
    return _number(k.device_kpis(store, device, at_ms).value(name))


def over_window(store: Store, device: DeviceRow, name: str, from_ms: int, to_ms: int
                ) -> float | None:
    """The device's KPI over [from_ms, to_ms) of record time (the module doc)."""
    fn = _window_fn(device.product or "", name)
    if fn is not None:
        return fn(store, device, from_ms, to_ms)
    return snapshot(store, device, name, to_ms)


def outcome(store: Store, device: DeviceRow, name: str, from_ms: int, to_ms: int
            ) -> float | None:
    """The KPI over the window minus the KPI over the same length just before it; None when
    either has no value."""
    length = to_ms - from_ms
    if _window_fn(device.product or "", name) is None:
        after, before = snapshot(store, device, name, to_ms), snapshot(store, device, name,
                                                                        from_ms)
    else:
        after = over_window(store, device, name, from_ms, to_ms)
        before = over_window(store, device, name, max(0, from_ms - length), from_ms)
    if after is None or before is None:
        return None
    return after - before


@dataclass(frozen=True)
class Clause:
    kpi: str
    op: str
    value: float


def holds(clause: Clause, now: float | None, before: float | None) -> bool:
    """Whether a clause holds for a KPI value now (and, for fell_by / rose_by, 4 weeks
    before). No value never holds; a relative change needs a positive value before."""
    if now is None:
        return False
    if clause.op in RELATIVE:
        if before is None or before <= 0:
            return False
        change = (now - before) / before
        return -change >= clause.value if clause.op == "fell_by" else change >= clause.value
    return {"<": now < clause.value, "<=": now <= clause.value, ">": now > clause.value,
            ">=": now >= clause.value}[clause.op]


def meets(store: Store, device: DeviceRow, clauses: list[Clause], at_ms: int) -> bool:
    """Whether every clause holds for the device as of at_ms ([] holds for everyone)."""
    if not clauses:
        return True
    now = k.device_kpis(store, device, at_ms)
    before = None
    if any(c.op in RELATIVE for c in clauses):
        before = k.device_kpis(store, device, max(0, at_ms - RELATIVE_WEEKS * WEEK_MS))
    for c in clauses:
        b = None if before is None else _number(before.value(c.kpi))
        if not holds(c, _number(now.value(c.kpi)), b):
            return False
    return True
