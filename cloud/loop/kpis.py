"""Outcome KPIs per product, computed on read from the stored telemetry (both backends: only
Store methods, bounded reads), as of a moment `at_ms` on record time.

- bike: rides per week, active minutes per week, mean power and its trend, and (personal)
  mean heart rate;
- mirror: sessions per week, active minutes per week, current and longest streak (days in a
  row with a session), and (personal) the time of day the person trains and reps per session;
- engine: cloud.loop.engine_kpis (EGT margin, efficiency trends, predicted remaining cycles).

Consent: each KPI names the tier it needs: the highest tier (protocol.consent.METRIC_TIERS) of
the metrics it reads, raised to `personal` where the KPI itself tells a person's habits (the
time of day someone trains at home says when they are in). A device whose effective consent
(cloud.services.consent.effective) is narrower gets the KPI as "not computed", with the tier
it would need; no query reads the metric for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import median

from cloud.loop import activity
from cloud.loop.activity import DAY_MS, WEEK_MS, Activity
from cloud.services import consent as consent_service
from cloud.store import DeviceRow, Store
from protocol import consent as tiers

HISTORY_WEEKS = 12  # read at most this much history per device (the trend and churn baseline)
RECENT_WEEKS = 4  # "per week" KPIs average over the last four weeks
MIN_TREND_ACTIVITIES = 3

OK = "ok"
NO_DATA = "no data"
NOT_COMPUTED = "not computed"

# product -> the usage-tier metric whose records mark an activity
ACTIVITY_METRIC = {"bike": "power", "mirror": "session_active"}
# Activity names as the product's owner says them.
ACTIVITY_WORD = {"bike": "rides", "mirror": "sessions", "engine": "flights"}


@dataclass(frozen=True)
class Kpi:
    name: str
    value: float | int | str | None
    unit: str
    tier: str  # the consent tier it needs
    status: str  # OK | NO_DATA | NOT_COMPUTED
    reason: str = ""


@dataclass(frozen=True)
class History:
    """What the KPIs, health and churn share of one device: its activities over the history
    window (usage tier only) and where that window starts."""

    from_ms: int
    at_ms: int
    acts: list[Activity]
    first_ms: int | None  # the device's first activity seen in the window

    def observed_weeks(self, weeks: int) -> float:
        """How many of the last `weeks` weeks the device was around for: at least one (a
        device seen for two days with two rides rode twice a week, not seven times)."""
        if self.first_ms is None:
            return 0.0
        return max(1.0, min(float(weeks), (self.at_ms - self.first_ms) / WEEK_MS))

    def recent(self, weeks: int = RECENT_WEEKS) -> list[Activity]:
        return [a for a in self.acts if a.start_ms >= self.at_ms - weeks * WEEK_MS]


@dataclass(frozen=True)
class DeviceKpis:
    device: str
    product: str | None
    at_ms: int
    consent: str | None  # the effective tier; None: never reported (unrestricted)
    kpis: list[Kpi]
    weekly: list[int] = field(default_factory=list)  # activities per week, oldest first
    history: History | None = None

    def value(self, name: str) -> float | int | str | None:
        for k in self.kpis:
            if k.name == name and k.status == OK:
                return k.value
        return None


def tier_of(product: str, metrics: Sequence[str], personal: bool = False) -> str:
    """The tier a KPI reading `metrics` needs (personal: it tells a habit whatever it reads)."""
    table = tiers.METRIC_TIERS.get(product, {})
    needed = max((tiers.rank(table.get(m, tiers.PERSONAL)) for m in metrics), default=0)
    if personal:
        needed = tiers.rank(tiers.PERSONAL)
    return tiers.TIERS[needed]


def permits(consent: str | None, tier: str) -> bool:
    """None (the device never reported consent: its data is stored as sent) permits all."""
    return consent is None or tiers.rank(consent) >= tiers.rank(tier)


def refused(name: str, unit: str, tier: str, consent: str | None) -> Kpi:
    return Kpi(name, None, unit, tier, NOT_COMPUTED,
               f"needs consent tier {tier}; the device allows {consent}")


def guarded(name: str, unit: str, tier: str, consent: str | None,
            compute: Callable[[], tuple[float | int | str | None, str]]) -> Kpi:
    """The KPI when consent permits it (compute() runs only then): (value, reason when
    there is no value)."""
    if not permits(consent, tier):
        return refused(name, unit, tier, consent)
    value, why = compute()
    return Kpi(name, value, unit, tier, OK if value is not None else NO_DATA, why)


def read_history(store: Store, device: DeviceRow, at_ms: int,
                 weeks: int = HISTORY_WEEKS) -> History:
    metric = ACTIVITY_METRIC.get(device.product or "")
    from_ms = max(0, at_ms - weeks * WEEK_MS)
    acts = activity.read(store, device.id, metric, from_ms, at_ms) if metric else []
    return History(from_ms, at_ms, acts, acts[0].start_ms if acts else None)


def per_week(h: History, count: float) -> float | None:
    weeks = h.observed_weeks(RECENT_WEEKS)
    return round(count / weeks, 2) if weeks else None


def slope_per_week(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of (t_ms, value) in value per week; None with too few points."""
    if len(points) < MIN_TREND_ACTIVITIES:
        return None
    xs = [t / WEEK_MS for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def _usage(h: History, word: str, consent: str | None, tier: str) -> list[Kpi]:
    recent = h.recent()
    why = f"no {word} in the last {HISTORY_WEEKS} weeks"

    def count() -> tuple[float | None, str]:
        return (per_week(h, len(recent)), "") if h.first_ms is not None else (None, why)

    def minutes() -> tuple[float | None, str]:
        if h.first_ms is None:
            return None, why
        return per_week(h, sum(a.minutes for a in recent)), ""

    return [guarded(f"{word}_per_week", "/week", tier, consent, count),
            guarded("active_minutes_per_week", "min/week", tier, consent, minutes)]


def bike_kpis(store: Store, device: DeviceRow, h: History, consent: str | None) -> list[Kpi]:
    recent = h.recent()

    def power() -> tuple[float | None, str]:
        if not recent:
            return None, f"no rides in the last {RECENT_WEEKS} weeks"
        total = sum(a.records for a in recent)
        return round(sum(a.mean * a.records for a in recent) / total, 1), ""

    def trend() -> tuple[float | None, str]:
        value = slope_per_week([(a.start_ms, a.mean) for a in h.acts])
        if value is None:
            return None, f"fewer than {MIN_TREND_ACTIVITIES} rides"
        return round(value, 2), ""

    def heart_rate() -> tuple[float | None, str]:
        start = h.at_ms - RECENT_WEEKS * WEEK_MS
        acts = activity.read(store, device.id, "heart_rate", max(0, start), h.at_ms)
        if not acts:
            return None, f"no heart rate in the last {RECENT_WEEKS} weeks"
        total = sum(a.records for a in acts)
        return round(sum(a.mean * a.records for a in acts) / total, 1), ""

    return [*_usage(h, "rides", consent, tier_of("bike", ["power"])),
            guarded("power_mean_w", "W", tier_of("bike", ["power"]), consent, power),
            guarded("power_trend_w_per_week", "W/week", tier_of("bike", ["power"]), consent,
                    trend),
            guarded("heart_rate_mean_bpm", "bpm", tier_of("bike", ["heart_rate"]), consent,
                    heart_rate)]


def streaks(acts: Sequence[Activity], at_ms: int) -> tuple[int, int]:
    """(current, longest) runs of UTC days with an activity; the current one may end today or
    yesterday (today may not be over)."""
    days = sorted({a.start_ms // DAY_MS for a in acts})
    longest = run = 0
    prev: int | None = None
    for d in days:
        run = run + 1 if prev is not None and d == prev + 1 else 1
        longest = max(longest, run)
        prev = d
    today = (at_ms - 1) // DAY_MS
    current = run if prev is not None and prev >= today - 1 else 0
    return current, longest


def slot(hour: float) -> str:
    return "morning" if hour < 11 else "midday" if hour < 16 else "evening"


def mirror_kpis(store: Store, device: DeviceRow, h: History, consent: str | None) -> list[Kpi]:
    current, longest = streaks(h.acts, h.at_ms)
    usage = tier_of("mirror", ["session_active"])
    no_sessions = "" if h.acts else f"no sessions in the last {HISTORY_WEEKS} weeks"

    def time_of_day() -> tuple[str | None, str]:
        if not h.acts:
            return None, no_sessions
        hours = [(a.start_ms % DAY_MS) / 3_600_000 for a in h.recent() or h.acts]
        mid = median(hours)
        return f"{int(mid):02d}:{int(mid % 1 * 60):02d} UTC ({slot(mid)})", ""

    def reps() -> tuple[float | None, str]:
        start = h.at_ms - RECENT_WEEKS * WEEK_MS
        acts = activity.read(store, device.id, "reps", max(0, start), h.at_ms)
        if not acts:
            return None, f"no reps in the last {RECENT_WEEKS} weeks"
        # reps count up through a session: its highest value is the session's total
        return round(sum(a.max for a in acts) / len(acts), 1), ""

    def streak(value: int) -> Callable[[], tuple[int | None, str]]:
        return lambda: (value, "") if h.acts else (None, no_sessions)

    return [*_usage(h, "sessions", consent, usage),
            guarded("current_streak_days", "days", usage, consent, streak(current)),
            guarded("longest_streak_days", "days", usage, consent, streak(longest)),
            guarded("time_of_day", "", tier_of("mirror", ["session_active"], personal=True),
                    consent, time_of_day),
            guarded("reps_per_session", "reps", tier_of("mirror", ["reps"]), consent, reps)]


def device_kpis(store: Store, device: DeviceRow, at_ms: int) -> DeviceKpis:
    """Every KPI of the device's product as of at_ms."""
    from cloud.loop import engine_kpis  # numpy and the model load only for engines

    consent = consent_service.effective(device)
    product = device.product or ""
    if product == "engine":
        ek = engine_kpis.compute(store, device, at_ms, consent)
        return DeviceKpis(device.id, device.product, at_ms, consent, ek.kpis, ek.weekly,
                          ek.history)
    h = read_history(store, device, at_ms)
    weekly = activity.weekly_counts(h.acts, at_ms, HISTORY_WEEKS)
    if product == "bike":
        kpis = bike_kpis(store, device, h, consent)
    elif product == "mirror":
        kpis = mirror_kpis(store, device, h, consent)
    else:
        kpis = []
    return DeviceKpis(device.id, device.product, at_ms, consent, kpis, weekly, h)
