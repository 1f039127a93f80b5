"""Health score per device and per customer (0-100), with its components shown, and the
fleet report the API, the CSV export and the dashboard page share.

Components of a device, each 0-100 or None when it cannot be judged (then left out of the
weighted mean, and shown as such):
- recency: days since the last ride, session or flight, against the device's own usual gap
  (7 / its rate per week): every usual gap beyond the first halves the score;
- frequency: activities per week in the last four weeks against the device's own rate over
  the weeks before (a new device with activity scores 100);
- outcome trend: the product's outcome moving the right way: a bike's power trend and a
  mirror's minutes per session (+-5 % a week spans 0..100, flat is 75), an engine's
  predicted remaining cycles against the model's cap;
- device health: the latest vitals (cloud.services.vitals): a fault reset, dropped records,
  a low heap each cost points;
- consent: personal 100, usage 70, essential 20: a customer who narrows what they share is
  telling something; never reported: None.
A customer's score is the mean of their devices' scores, and each component the mean of
theirs. Everything is computed on read, each device once per report (FleetReport).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cloud.loop import activity, churn, forced, kpis
from cloud.loop.activity import DAY_MS, WEEK_MS
from cloud.loop.churn import Risk
from cloud.loop.kpis import DeviceKpis, History
from cloud.store import DeviceRow, Store
from protocol.consent import PERSONAL
from protocol.state import FAULT_RESETS

WEIGHTS = {"recency": 0.3, "frequency": 0.3, "outcome": 0.15, "device": 0.15, "consent": 0.1}
CONSENT_SCORE = {"personal": 100, "usage": 70, "essential": 20}
TREND_SPAN = 0.05  # a 5 % change a week is the whole scale
LOW_HEAP_BYTES = 8 * 1024


@dataclass(frozen=True)
class Component:
    name: str
    score: int | None
    why: str


@dataclass(frozen=True)
class DeviceHealth:
    device: str
    product: str | None
    customer: str | None
    score: int | None
    components: list[Component]
    kpis: DeviceKpis
    risk: Risk | None = None


@dataclass(frozen=True)
class CustomerHealth:
    customer: str
    devices: list[str]
    score: int | None
    components: list[Component]
    weakest: str | None  # the device with the lowest score


def weighted(components: Sequence[Component]) -> int | None:
    known = [(WEIGHTS[c.name], c.score) for c in components if c.score is not None]
    total = sum(w for w, _ in known)
    return round(sum(w * s for w, s in known) / total) if total else None


def _clamp(x: float) -> int:
    return int(round(max(0.0, min(100.0, x))))


def baseline_per_week(h: History) -> float | None:
    """The device's rate before the last four weeks (None: it is newer than that)."""
    if h.first_ms is None:
        return None
    cut = h.at_ms - kpis.RECENT_WEEKS * WEEK_MS
    weeks = (cut - h.first_ms) / WEEK_MS
    if weeks < 1:
        return None
    return sum(1 for a in h.acts if a.start_ms < cut) / weeks


def recency(h: History | None, word: str) -> Component:
    if h is None or not h.acts:
        return Component("recency", 0 if h is not None else None,
                         f"no {word} in the last {kpis.HISTORY_WEEKS} weeks")
    since = (h.at_ms - max(a.start_ms for a in h.acts)) / DAY_MS
    rate = len(h.acts) / h.observed_weeks(kpis.HISTORY_WEEKS)
    usual = 7.0 / rate if rate else 7.0
    score = 100 * 0.5 ** (max(0.0, since - usual) / max(usual, 2.0))
    return Component("recency", _clamp(score),
                     f"last {word[:-1]} {since:.1f} days ago (usual gap {usual:.1f} days)")


def frequency(h: History | None, word: str) -> Component:
    if h is None or h.first_ms is None:
        return Component("frequency", 0 if h is not None else None, f"no {word}")
    recent = len(h.recent()) / h.observed_weeks(kpis.RECENT_WEEKS)
    base = baseline_per_week(h)
    if base is None or base == 0:
        return Component("frequency", 100 if recent else 0,
                         f"{recent:.1f} {word} a week (too new for a baseline)")
    return Component("frequency", _clamp(100 * recent / base),
                     f"{recent:.1f} {word} a week in the last {kpis.RECENT_WEEKS} weeks, "
                     f"{base:.1f} before")


def _trend(slope: float | None, level: float | None, what: str) -> Component:
    if slope is None or not level:
        return Component("outcome", None, f"not enough {what} for a trend")
    rel = slope / level
    return Component("outcome", _clamp(75 + 25 * rel / TREND_SPAN),
                     f"{what} {100 * rel:+.1f} % a week")


def outcome(k: DeviceKpis) -> Component:
    h = k.history
    if k.product == "bike":
        return _trend(_num(k.value("power_trend_w_per_week")), _num(k.value("power_mean_w")),
                      "power")
    if k.product == "mirror" and h is not None:
        slope = kpis.slope_per_week([(a.start_ms, float(a.minutes)) for a in h.acts])
        level = sum(a.minutes for a in h.acts) / len(h.acts) if h.acts else None
        return _trend(slope, level, "minutes per session")
    if k.product == "engine":
        rul = _num(k.value("predicted_remaining_cycles"))
        if rul is None:
            return Component("outcome", None, "no remaining-life prediction")
        return Component("outcome", _clamp(100 * rul / 125),
                         f"predicted remaining cycles {rul:.0f}")
    return Component("outcome", None, "no outcome KPI for this product")


def _num(value: float | int | str | None) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def device_vitals(device: DeviceRow) -> Component:
    v = device.reported
    if not v:
        return Component("device", None, "no vitals reported")
    score, why = 100, []
    if v.get("reset_cause") in FAULT_RESETS:
        score -= 40
        why.append(f"last reset: {v['reset_cause']}")
    if v.get("dropped"):
        score -= 25
        why.append(f"{v['dropped']} records dropped")
    if isinstance(v.get("heap_low"), int) and v["heap_low"] < LOW_HEAP_BYTES:
        score -= 20
        why.append(f"heap low {v['heap_low']} B")
    return Component("device", max(0, score), "; ".join(why) or "vitals normal")


def consent_component(consent: str | None) -> Component:
    if consent is None:
        return Component("consent", None, "never reported (firmware before consent)")
    return Component("consent", CONSENT_SCORE.get(consent), f"tier {consent}")


def device_health(store: Store, device: DeviceRow, customer: str | None, at_ms: int,
                  changes: dict[str, forced.Changes] | None = None) -> DeviceHealth:
    """The device's health as of at_ms. `changes`: every device's policy changes,
    cloud.loop.forced.read's (read from the store when not given)."""
    k = kpis.device_kpis(store, device, at_ms)
    word = kpis.ACTIVITY_WORD.get(device.product or "", "records")
    comps = [recency(k.history, word), frequency(k.history, word), outcome(k),
             device_vitals(device), consent_component(k.consent)]
    score = weighted(comps)
    if changes is None:
        changes = forced.read(store)
    own = changes.get(device.id, forced.NONE)
    risk = churn.assess(device.id, customer, device.product, k.consent, k.history,
                        reps=session_reps(store, device, k), forced=own.effort,
                        coached=own.coached)
    if risk is not None:
        risk = replace(risk, score=score)
    return DeviceHealth(device.id, device.product, customer, score, comps, k, risk)


def session_reps(store: Store, device: DeviceRow, k: DeviceKpis) -> dict[int, float] | None:
    """A mirror's reps per session (its highest count: reps count up through a session) by
    the session's start, over the history window; None unless the device shares personal
    data (nothing is read then)."""
    h = k.history
    if device.product != "mirror" or h is None or not h.acts \
            or not kpis.permits(k.consent, PERSONAL):
        return None
    return {a.start_ms: a.max for a in activity.read(store, device.id, "reps", h.from_ms,
                                                      h.at_ms)}


def customer_health(customer: str, devices: Sequence[DeviceHealth]) -> CustomerHealth:
    scored = [d for d in devices if d.score is not None]
    comps = []
    for name in WEIGHTS:
        values = [c.score for d in devices for c in d.components
                  if c.name == name and c.score is not None]
        comps.append(Component(name, round(sum(values) / len(values)) if values else None,
                               f"mean of {len(values)} devices"))
    weakest = min(scored, key=lambda d: d.score or 0).device if scored else None
    score = round(sum(d.score or 0 for d in scored) / len(scored)) if scored else None
    return CustomerHealth(customer, [d.device for d in devices], score, comps, weakest)


@dataclass
class FleetReport:
    """Every device's health as of at_ms, each device computed once (a request's cache)."""

    at_ms: int
    devices: list[DeviceHealth] = field(default_factory=list)

    def customers(self) -> list[CustomerHealth]:
        by: dict[str, list[DeviceHealth]] = {}
        for d in self.devices:
            if d.customer is not None:
                by.setdefault(d.customer, []).append(d)
        return [customer_health(c, ds) for c, ds in sorted(by.items())]

    def risks(self) -> list[Risk]:
        """Declining first (the ones a call can still turn), then lapsed, then consent;
        lowest health first within each."""
        order = {churn.DECLINING: 0, churn.LAPSED: 1, churn.CONSENT: 2}
        risks = [d.risk for d in self.devices if d.risk is not None]
        return sorted(risks, key=lambda r: (order[r.kind], r.score if r.score is not None
                                            else 101, r.device))


def report(store: Store, at_ms: int, devices: Sequence[DeviceRow] | None = None) -> FleetReport:
    """The report of the given devices (default: every device), cancelled customers' left out
    of the churn list (they have gone already)."""
    regs = {r.device: r for r in store.registries()}
    cancelled = {c.id for c in store.list_customers() if c.cancelled_ms is not None}
    out = FleetReport(at_ms)
    changes = forced.read(store)
    for device in (store.list_devices() if devices is None else devices):
        reg = regs.get(device.id)
        if reg is not None and reg.status != "active":
            continue
        customer = reg.customer if reg is not None else None
        h = device_health(store, device, customer, at_ms, changes)
        if customer in cancelled and h.risk is not None:
            h = replace(h, risk=None)
        out.devices.append(h)
    return out
