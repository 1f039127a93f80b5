"""Churn risk: which riders and mirror users are drifting away, and why, from their activity.

People who drift away show it in three ways, and the model weighs each as a log-likelihood
ratio (LLR) of "declining since some onset" over "steady", the onset and levels fitted:

- how often (decline): someone used the product on about a share q of their days, and from
  some day on the share halves every few weeks (HALF_LIFE_DAYS). The steady model and the
  decline alike let the day's chance depend on whether the day before was active, so a
  mirror user's streak that ends (daily, then back to their base rate) is not read as a
  decline. Usage tier.
- how hard (slide): the effort in each activity, a ride's mean power (usage) or a session's
  reps a minute (personal), falling linearly (in log) from an onset after a steady stretch.
- when (wander): the start time of day spreading out from an onset (personal: when someone
  trains at home says when they are in).

The activities' length is fitted the same way (the slide model on minutes). Which of these
tell a leaver from someone in a busy spell (a few weeks of shorter, fewer rides that pass) is
learned: cloud.loop.churn_model weighs the signals' log-likelihood ratios, what fell by how
much, the days since the last activity and how many there were, and lists a device whose
risk reaches its threshold. The reason shows the signals, and their plain sum as the
evidence. The hand-set rule before it (the sum of three signals at least 4.5, and the rate
or the effort down) listed with precision 0.80 and recall 0.78; docs/benchmarks.md has both.
The first prototype, a test of the last weeks' count against the weeks before, did a little
worse than the decline model: it throws away when in the window the rides stopped.

Also listed, with their own reason: devices with no activity for LAPSED_DAYS (already
lapsed: customer success still wants to call them, but a churn model earns nothing for
them), and devices whose consent no longer lets the cloud see their usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from cloud.loop import churn_model
from cloud.loop.activity import DAY_MS, GAP_MS
from cloud.loop.churn_model import ChurnModel
from cloud.loop.forced import within
from cloud.loop.kpis import ACTIVITY_WORD, History, permits
from protocol.consent import PERSONAL

HALF_LIFE_DAYS = 17.5  # a habit that fades halves in two to three weeks
MIN_BASELINE_DAYS = 7  # an onset needs a week of steady use before it
LLR_MIN = 1.5  # the rate model's own threshold (Decline.at_risk)
FACTOR_MAX = 0.8  # a decline that matters: the rate down by a fifth
LAPSED_DAYS = 14
SHARES = np.linspace(0.02, 0.98, 49)[:, None]  # the grid of daily shares q
# The slide model (what people do in each ride or session, not how often)
MIN_BEFORE = 4  # activities at a steady level before a slide's onset
MIN_AFTER = 2  # ... and at least this many after it
MIN_MINUTES = 3  # shorter runs of records are not a ride (a bike bumped, a test)
SIGMA_FLOOR = 0.04  # the least ride-to-ride spread of a measure, in log units (4 %)
WANDER_FLOOR_MIN = 10.0  # the least spread of a start time around its usual one, minutes
# An activity this long after the one before begins the person's next day: a second session
# of the same day (a morning ride, then an evening one) comes within a waking day, the next
# day's first about a day later give or take a few hours (so in the simulated fleets too,
# where a day's second activity starts at most about nine hours after the first)
NEW_DAY_MS = 12 * 3_600_000
DAY_MINUTES = 24 * 60
# The evidence shown: the signals' log-likelihood ratios summed (the wander's at half weight:
# it is the weakest and the noisiest). The decision is churn_model's.
WANDER_WEIGHT = 0.5
# What the reason mentions: a signal whose fall is at least this
MINUTES_SHOWN = 0.1
EFFORT_SHOWN = 0.03
WANDER_SHOWN = 2.0
RATE_SHOWN = 0.9
# The last weeks against the usual (Recent): the last week's and two weeks' activities against
# those of the weeks before them back to USUAL_DAYS, the last three weeks' against all before.
# A fade is a slope that goes on; a busy spell a step that passes; the fitted models see
# neither's end, so the trees read these as well (out of fold 0.803/0.802 -> 0.833/0.825).
RECENT_DAYS = (7, 14, 21)
USUAL_DAYS = 56
LAST_ACTIVITIES = 3
GAP_WINDOW_DAYS = 28
USUAL_GAP_DAYS = 2.0  # the usual pause of a device with no activities before that window
NO_ONSET_DAYS = 99.0  # a signal with no onset reads as one this long ago
# Coaching (cloud.loop.forced): the rate since it reached a device is compared with the rate
# in at most these many weeks before it
COACH_BEFORE_WEEKS = 4
RATE_CHANGE_MAX = 5.0

DECLINING = "declining"
LAPSED = "lapsed"
CONSENT = "consent"


@dataclass(frozen=True)
class Decline:
    llr: float  # log-likelihood ratio, decline over steady (>= 0)
    onset_ms: int | None  # when the decline began (None: steady fits best)
    factor: float  # the decay now: 1.0 steady, 0.5 halved
    before_per_week: float  # the rate before the onset
    now_per_week: float  # ... and now

    @property
    def at_risk(self) -> bool:
        """The rate model's own rule (the model before the other signals; kept to compare
        with: the list uses Evidence.at_risk)."""
        return self.llr >= LLR_MIN and self.factor <= FACTOR_MAX


def active_days(h: History) -> np.ndarray | None:
    """1.0 for each UTC day from the first activity's day to at_ms's with an activity."""
    if h.first_ms is None:
        return None
    first = h.first_ms // DAY_MS
    last = (h.at_ms - 1) // DAY_MS
    x = np.zeros(last - first + 1)
    for a in h.acts:
        x[a.start_ms // DAY_MS - first] = 1.0
    return x


def _terms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each day's log-likelihood for each decay curve (rows of w) and each share q of the
    grid, when day d's chance is q * w[d]: shape (curves, shares, days)."""
    p = np.clip(SHARES[None, :, :] * w[:, None, :], 1e-6, 1 - 1e-6)
    return np.log(np.where(x > 0, p, 1.0 - p))


def _loglik(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Log-likelihood of the active days x for each decay curve and share: (curves, shares)."""
    return _terms(x, w).sum(axis=2)


def _split(terms: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The best log-likelihood for each decay curve when the day's share depends on whether
    the day before was active (`after`: 1.0 where it was): two shares, each the best of the
    grid for its own days. Shape (curves,)."""
    return (terms @ after).max(axis=1) + (terms @ (1.0 - after)).max(axis=1)


def decline(h: History, streaks: bool = False) -> Decline | None:
    """The decline model of the device's history; None without any activity. All onsets
    and shares at once: one (onsets x shares x days) array, about 0.3 M numbers.

    streaks: the day's chance may differ after an active day and after an idle one (a mirror
    user on a streak trains nearly daily, then at their base rate when it breaks), in the
    steady model and the decline alike: a streak that ends is then no evidence of decline."""
    x = active_days(h)
    if x is None:
        return None
    n = len(x)
    after = np.concatenate(([0.0], x[:-1]))
    steady_terms = _terms(x, np.ones((1, n)))
    steady_ll = steady_terms.sum(axis=2)[0]
    q0 = float(SHARES[int(steady_ll.argmax()), 0])
    steady = float(_split(steady_terms, after)[0]) if streaks else float(steady_ll.max())
    if n <= MIN_BASELINE_DAYS:
        return Decline(0.0, None, 1.0, q0 * 7, q0 * 7)
    onsets = np.arange(MIN_BASELINE_DAYS, n)
    days = np.arange(n)
    w = np.where(days[None, :] < onsets[:, None], 1.0,
                 0.5 ** ((days[None, :] - onsets[:, None]) / HALF_LIFE_DAYS))
    terms = _terms(x, w)
    ll = terms.sum(axis=2)
    ij = np.unravel_index(int(ll.argmax()), ll.shape)
    i, j = int(ij[0]), int(ij[1])
    best = float(ll[i, j])
    if streaks:
        split = _split(terms, after)
        i = int(split.argmax())
        best = float(split[i])
        j = int(ll[i].argmax())  # the rates reported are those of one share
    llr = best - steady
    if llr <= 0:
        return Decline(0.0, None, 1.0, q0 * 7, q0 * 7)
    onset = int(onsets[i])
    q = float(SHARES[j, 0])
    factor = float(0.5 ** ((n - onset) / HALF_LIFE_DAYS))
    first_day = (h.first_ms or 0) // DAY_MS
    return Decline(llr, (first_day + onset) * DAY_MS, factor, q * 7, q * 7 * factor)


@dataclass(frozen=True)
class Trend:
    """One measure of each activity (its minutes, its mean power, reps a minute) before a
    slide's onset and at the last activity, as the slide model fits it."""

    name: str
    unit: str
    before: float
    now: float

    @property
    def drop(self) -> float:
        """The share lost: 0.25 when now is three quarters of before."""
        return 1.0 - self.now / self.before if self.before > 0 else 0.0


@dataclass(frozen=True)
class Slide:
    llr: float  # log-likelihood ratio, a slide from the onset over steady values (>= 0)
    onset_ms: int | None  # after the last activity that was still steady
    trends: tuple[Trend, ...]


@dataclass(frozen=True)
class Measures:
    """Per activity: its start and the measures the slide model reads (positive values)."""

    starts_ms: list[int]
    values: dict[str, tuple[str, list[float]]]  # name -> (unit, one value per activity)


def measures(h: History, product: str, reps: dict[int, float] | None = None) -> Measures:
    """The slide model's measures of each finished activity: minutes (usage), a ride's mean
    power (usage), a session's reps a minute (personal: `reps` maps an activity's start to
    its reps, given only for devices that share them). An activity that may still be going
    at at_ms is left out: its length is not known yet."""
    done = [a for a in h.acts if a.end_ms <= h.at_ms - GAP_MS and a.minutes >= MIN_MINUTES]
    values: dict[str, tuple[str, list[float]]] = {
        "minutes": ("minutes", [float(a.minutes) for a in done])}
    if product == "bike":
        values["power"] = ("W", [max(a.mean, 1.0) for a in done])
    if product == "mirror" and reps is not None:
        paced = [a for a in done if reps.get(a.start_ms)]
        if len(paced) == len(done):
            values["reps a minute"] = ("", [reps[a.start_ms] / a.minutes for a in done])
    return Measures([a.start_ms for a in done], values)


def _gauss_ll(rss: np.ndarray, n: int) -> np.ndarray:
    """Log-likelihood of residuals with this sum of squares, the variance fitted but not
    below SIGMA_FLOOR's square (a person who rides exactly 30 minutes every time is not
    infinitely surprising the day they ride 29)."""
    v = np.maximum(rss / n, SIGMA_FLOOR ** 2)
    return np.asarray(-0.5 * n * np.log(v) - rss / (2 * v))


def slide(m: Measures) -> Slide | None:
    """Have the activities' measures (log scale) been sliding since some onset? Against a
    steady level, a level that falls linearly from an onset after the MIN_BEFORE-th activity
    (at least MIN_AFTER after it), one onset for every measure, each its own slope and noise;
    every onset at once in numpy. None with too few activities."""
    n = len(m.starts_ms)
    if n < MIN_BEFORE + MIN_AFTER or not m.values:
        return None
    t = np.asarray(m.starts_ms, dtype=float) / DAY_MS
    onsets = t[MIN_BEFORE - 1:n - MIN_AFTER]
    x = np.maximum(0.0, t[None, :] - onsets[:, None])
    xc = x - x.mean(axis=1, keepdims=True)
    sxx = np.maximum((xc ** 2).sum(axis=1), 1e-9)
    total = np.zeros(len(onsets))
    fits = []
    for name, (unit, raw) in m.values.items():
        y = np.log(np.asarray(raw))
        yc = y - y.mean()
        rss0 = float((yc ** 2).sum())
        sxy = (xc * yc[None, :]).sum(axis=1)
        b = np.where(sxy < 0, sxy / sxx, 0.0)  # only a fall is a warning
        total += _gauss_ll(rss0 - b * sxy, n) - _gauss_ll(np.asarray(rss0), n)
        fits.append((name, unit, y, b))
    k = int(total.argmax())
    llr = float(total[k])
    if llr <= 0:
        return Slide(0.0, None, ())
    trends = []
    for name, unit, y, b in fits:
        level = float(y.mean() - b[k] * x[k].mean())  # the fitted value at and before onset
        trends.append(Trend(name, unit, float(np.exp(level)),
                            float(np.exp(level + b[k] * x[k, -1]))))
    return Slide(llr, int(onsets[k] * DAY_MS), tuple(trends))


@dataclass(frozen=True)
class Wander:
    llr: float  # log-likelihood ratio, a wider spread from the onset over a steady one
    onset_ms: int | None
    before_min: float  # the start's spread around its usual time, minutes (sd)
    now_min: float


def day_firsts(h: History) -> list[int]:
    """The start of each day's first activity, a day being the person's own: an activity that
    begins less than NEW_DAY_MS after the one before belongs to the same day (a second ride
    six hours after an evening one, past midnight, is that evening's second, not the next
    day's first)."""
    firsts: list[int] = []
    last: int | None = None
    for a in h.acts:
        if last is None or a.start_ms - last >= NEW_DAY_MS:
            firsts.append(a.start_ms)
        last = a.start_ms
    return firsts


def clock_offsets(starts_ms: Sequence[int]) -> np.ndarray:
    """Each start's minutes from the usual time of day (their median), read around the
    clock: 00:05 is 15 minutes after 23:50, not 23 hours 45 before it."""
    minutes = np.asarray([(t % DAY_MS) / 60_000 for t in starts_ms], dtype=float)
    angle = minutes * (2 * np.pi / DAY_MINUTES)
    mean = float(np.arctan2(np.sin(angle).sum(), np.cos(angle).sum())) * DAY_MINUTES / (2 * np.pi)
    off = (minutes - mean + DAY_MINUTES / 2) % DAY_MINUTES - DAY_MINUTES / 2
    return np.asarray(off - np.median(off))


def wander(h: History) -> Wander | None:
    """Has the start time of day spread out since some onset? The first activity of each day
    (day_firsts: a second one is hours later by habit, not by drift), its minutes from the
    usual start (clock_offsets); a normal spread against one that widens from an onset (at
    least MIN_BEFORE days before it and MIN_AFTER after). This reads when someone trains, a
    personal habit: callers use it only for devices that share personal data."""
    firsts = day_firsts(h)
    n = len(firsts)
    if n < MIN_BEFORE + MIN_AFTER + 2:
        return None
    r2 = clock_offsets(firsts) ** 2
    floor = WANDER_FLOOR_MIN ** 2
    whole = max(float(r2.mean()), floor)
    csum = np.cumsum(r2)
    ks = np.arange(MIN_BEFORE, n - MIN_AFTER + 1)  # activities before the onset
    v1 = np.maximum(csum[ks - 1] / ks, floor)
    v2 = np.maximum((csum[-1] - csum[ks - 1]) / (n - ks), floor)
    llr = 0.5 * (n * np.log(whole) - ks * np.log(v1) - (n - ks) * np.log(v2))
    llr = np.where(v2 > v1, llr, 0.0)
    k = int(llr.argmax())
    if llr[k] <= 0:
        return Wander(0.0, None, float(np.sqrt(whole)), float(np.sqrt(whole)))
    return Wander(float(llr[k]), firsts[int(ks[k]) - 1], float(np.sqrt(v1[k])),
                  float(np.sqrt(v2[k])))


@dataclass(frozen=True)
class Shift:
    """One measure (log of minutes, or of effort) of the latest activities against the usual
    ones: the mean of those in the last 7, 14 and 21 days and of the last LAST_ACTIVITIES, each
    less the median of the activities before (0.0 where either side is too thin)."""

    days_7: float = 0.0
    days_14: float = 0.0
    days_21: float = 0.0
    last: float = 0.0


@dataclass(frozen=True)
class Recent:
    """The last weeks against the usual, model-free: what the declines' fits smooth over
    (a busy spell that ended, a slide that began only lately)."""

    minutes: Shift
    effort: Shift
    rate_change: float  # activities a week in the last two weeks over before (0.25 added)
    measured: int  # activities with a length in the last two weeks
    longest_gap: float  # the longest pause of the last four weeks (to now) over the usual one


def _shift(starts: np.ndarray, logs: np.ndarray, at_ms: int) -> Shift:
    def rel(sel: np.ndarray, usual: np.ndarray) -> float:
        if not sel.any() or usual.sum() < 2:
            return 0.0
        return float(logs[sel].mean() - np.median(logs[usual]))

    week, fortnight, three = (at_ms - d * DAY_MS for d in RECENT_DAYS)
    usual = (starts < fortnight) & (starts >= at_ms - USUAL_DAYS * DAY_MS)
    k = LAST_ACTIVITIES
    last = (float(logs[-k:].mean() - np.median(logs[:-k]))
            if len(logs) > 2 * k else 0.0)
    return Shift(rel(starts >= week, usual), rel(starts >= fortnight, usual),
                 rel(starts >= three, starts < three), last)


def own_effort(m: Measures, name: str, forced: Sequence[tuple[int, int]] = ()
               ) -> Measures | None:
    """The effort measure `name` of the activities a policy's change did not set (`forced`:
    a pushed target power is not the rider's effort); None where it is not read."""
    if name not in m.values:
        return None
    unit, values = m.values[name]
    own = [i for i, t in enumerate(m.starts_ms) if not within(t, forced)]
    return Measures([m.starts_ms[i] for i in own], {name: (unit, [values[i] for i in own])})


def recent(h: History, m: Measures, effort: Measures | None) -> Recent:
    """The device's Recent from its measures (m) and its own effort (own_effort)."""
    at = h.at_ms
    starts = np.asarray(m.starts_ms, dtype=float)
    minutes = _shift(starts, np.log(np.asarray(m.values["minutes"][1], dtype=float)), at)
    effort_shift = Shift()
    if effort is not None:
        ((_, values),) = effort.values.values()
        effort_shift = _shift(np.asarray(effort.starts_ms, dtype=float),
                              np.log(np.asarray(values, dtype=float)), at)
    acts = np.asarray([a.start_ms for a in h.acts], dtype=float)
    fortnight = at - RECENT_DAYS[1] * DAY_MS
    # the weeks the device was seen in before the last two (at least half a week)
    weeks_before = min((USUAL_DAYS - RECENT_DAYS[1]) / 7,
                       max(0.5, (fortnight - (h.first_ms or at)) / (7 * DAY_MS)))
    now = (acts >= fortnight).sum() / (RECENT_DAYS[1] / 7)
    before = ((acts < fortnight) & (acts >= at - USUAL_DAYS * DAY_MS)).sum() / weeks_before
    window = at - GAP_WINDOW_DAYS * DAY_MS
    ends = np.concatenate((acts[acts >= window], [at]))
    gap = float(np.diff(ends).max()) / DAY_MS if len(ends) > 1 else float(GAP_WINDOW_DAYS)
    earlier = np.diff(acts[acts < window]) / DAY_MS
    usual_gap = float(np.median(earlier)) if len(earlier) else USUAL_GAP_DAYS
    return Recent(minutes, effort_shift, (now + 0.25) / (before + 0.25),
                  int((starts >= fortnight).sum()), gap / usual_gap)


@dataclass(frozen=True)
class Risk:
    device: str
    customer: str | None
    product: str | None
    kind: str  # DECLINING | LAPSED | CONSENT
    reason: str
    since_ms: int | None  # when it began (the onset, the last activity, ...)
    score: int | None = None  # the device's health score, for sorting and display


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Evidence:
    """Everything the model weighed for one device: each signal's own fit (None when it was
    not read: too few activities, or consent does not cover it), their sum, and what the
    learned decision reads besides (cloud.loop.churn_model)."""

    decline: Decline
    effort: Slide | None  # power (bike, usage) or reps a minute (mirror, personal)
    minutes: Slide | None  # the activities' length
    wander: Wander | None  # the start time's spread (personal)
    idle_days: float = 0.0  # since the last activity
    activities: int = 0  # in the history window
    mirror: bool = False
    personal: bool = False
    coaching: Coaching | None = None  # coached by a policy's change (cloud.loop.forced)
    forced_days: float = 0.0  # days a policy's change set the effort, in the history window
    recent: Recent | None = None  # the last weeks against the usual
    at_ms: int = 0  # the moment the evidence is of (the signals' onsets are read against it)

    @property
    def total(self) -> float:
        """The signals' log-likelihood ratios summed (the wander's at half weight): what the
        reason shows as the evidence."""
        return (self.decline.llr + (self.effort.llr if self.effort else 0.0)
                + WANDER_WEIGHT * (self.wander.llr if self.wander else 0.0))

    @property
    def effort_drop(self) -> float:
        return max((t.drop for t in self.effort.trends), default=0.0) if self.effort else 0.0

    @property
    def minutes_drop(self) -> float:
        return self.minutes.trends[0].drop if self.minutes and self.minutes.trends else 0.0

    def named(self) -> dict[str, float]:
        """Every number the churn model may read, by its name in churn_model.FEATURES."""
        w, c = self.wander, self.coaching
        return {
            "decline_llr": self.decline.llr, "effort_llr": self.effort.llr if self.effort else 0.0,
            "wander_llr": w.llr if w else 0.0, "minutes_llr": self.minutes.llr if self.minutes else 0.0,
            "rate_factor": self.decline.factor, "effort_drop": self.effort_drop,
            "minutes_drop": self.minutes_drop,
            "wander_ratio": w.now_min / w.before_min if w and w.before_min > 0 else 1.0,
            "idle_days": self.idle_days, "activities": float(self.activities),
            "rate_before": self.decline.before_per_week, "mirror": float(self.mirror),
            "personal": float(self.personal),
            "coached_days": c.days if c else 0.0,
            "coached_rate_change": c.rate_change if c else 1.0,
            "before_coached_llr": c.before.llr if c else 0.0,
            "before_coached_factor": c.before.factor if c else 1.0,
            "forced_days": self.forced_days,
            **self._recent_named(),
        }

    def _recent_named(self) -> dict[str, float]:
        at = self.at_ms

        def age(onset_ms: int | None) -> float:
            return (at - onset_ms) / DAY_MS if onset_ms is not None else NO_ONSET_DAYS

        r = self.recent or Recent(Shift(), Shift(), 1.0, 0, 1.0)
        named = {"decline_age": age(self.decline.onset_ms),
                 "effort_age": age(self.effort.onset_ms if self.effort else None),
                 "minutes_age": age(self.minutes.onset_ms if self.minutes else None),
                 "wander_age": age(self.wander.onset_ms if self.wander else None),
                 "rate_change_14d": r.rate_change, "measured_14d": float(r.measured),
                 "longest_gap": r.longest_gap}
        for name, shift in (("minutes", r.minutes), ("effort", r.effort)):
            named |= {f"{name}_7d": shift.days_7, f"{name}_14d": shift.days_14,
                      f"{name}_21d": shift.days_21, f"{name}_last": shift.last}
        return named

    def features(self) -> tuple[float, ...]:
        """What the churn model reads, in churn_model.FEATURES' order."""
        named = self.named()
        return tuple(named[name] for name in churn_model.FEATURES)

    def risk(self, model: ChurnModel | None = None) -> float:
        """The chance that this person is disengaging (the shipped model by default)."""
        return (model or churn_model.shipped()).risk(self.features())

    def at_risk(self, model: ChurnModel | None = None) -> bool:
        """On the list: a risk at or above the model's threshold."""
        m = model or churn_model.shipped()
        return self.risk(m) >= m.threshold


@dataclass(frozen=True)
class Coaching:
    """A device a policy's change coached (coach mode on), as of the list: coaching makes a
    responder ride more and halts a decline where it was, so the riding since tells less and
    the riding before it more."""

    days: float  # since the coaching reached the device
    rate_change: float  # activities a week since it over those in the weeks before it
    before: Decline  # the decline model of the history before it


def coaching(h: History, spans: Sequence[tuple[int, int]]) -> Coaching | None:
    """The coaching of the device as of at_ms, from the periods coach mode was on (the first
    that began by at_ms); None when it was not coached."""
    began = min((a for a, _ in spans if a < h.at_ms), default=None)
    if began is None or h.first_ms is None:
        return None
    after = sum(1 for a in h.acts if a.start_ms >= began)
    before_from = max(h.first_ms, began - COACH_BEFORE_WEEKS * 7 * DAY_MS)
    before = sum(1 for a in h.acts if before_from <= a.start_ms < began)
    weeks_after = max((h.at_ms - began) / (7 * DAY_MS), 1 / 7)
    weeks_before = max((began - before_from) / (7 * DAY_MS), 1 / 7)
    change = ((after + 0.5) / weeks_after) / ((before + 0.5) / weeks_before)
    earlier = History(h.from_ms, began, [a for a in h.acts if a.start_ms < began],
                      h.first_ms if h.first_ms < began else None)
    d = decline(earlier, streaks=True) if earlier.first_ms is not None else None
    return Coaching((h.at_ms - began) / DAY_MS, min(change, RATE_CHANGE_MAX),
                    d or Decline(0.0, None, 1.0, 0.0, 0.0))


def overlap_days(spans: Sequence[tuple[int, int]], from_ms: int, to_ms: int) -> float:
    """Days of [from_ms, to_ms) inside the spans (taken as not overlapping each other)."""
    return sum(max(0, min(b, to_ms) - max(a, from_ms)) for a, b in spans) / DAY_MS


def evidence(h: History, product: str, personal: bool,
             reps: dict[int, float] | None = None,
             forced: Sequence[tuple[int, int]] = (),
             coached: Sequence[tuple[int, int]] = ()) -> Evidence | None:
    """Weigh a bike's or mirror's history. `personal`: the device shares personal data (the
    start times are read only then; `reps` is given only then). `forced`: periods when a
    pushed setting set the effort (cloud.loop.forced): the effort signal leaves out the
    activities begun in them. `coached`: periods a pushed setting had coach mode on. None
    without activity."""
    d = decline(h, streaks=True)
    if d is None:
        return None
    m = measures(h, product, reps if personal else None)
    own = own_effort(m, "power" if product == "bike" else "reps a minute", forced)
    effort = slide(own) if own is not None else None
    minutes = slide(Measures(m.starts_ms, {"minutes": m.values["minutes"]}))
    last = max(a.start_ms for a in h.acts)
    return Evidence(d, effort, minutes, wander(h) if personal else None,
                    idle_days=(h.at_ms - last) / DAY_MS, activities=len(h.acts),
                    mirror=product == "mirror", personal=personal,
                    coaching=coaching(h, coached),
                    forced_days=overlap_days(forced, h.from_ms, h.at_ms),
                    recent=recent(h, m, own), at_ms=h.at_ms)


def reason(word: str, e: Evidence, risk: float | None = None) -> tuple[str, int | None]:
    """What the customer-success team reads, and since when: "rides shortened from 48 to 31
    minutes, power fell from 182 to 160 W; rides fell from 4.1 to 2.0 a week since about
    2026-04-09 (risk 81%, evidence 9.3 ...)". Each part only where its signal shows; the date is the
    onset of the strongest signal that counted."""
    parts: list[str] = []
    counted: list[tuple[float, int]] = []  # (its evidence, its onset)
    if e.minutes and e.minutes.onset_ms is not None and e.minutes.trends[0].drop >= MINUTES_SHOWN:
        t = e.minutes.trends[0]
        parts.append(f"{word} shortened from {t.before:.0f} to {t.now:.0f} minutes")
    if e.effort and e.effort.onset_ms is not None and e.effort_drop >= EFFORT_SHOWN:
        t = e.effort.trends[0]
        if t.unit:
            parts.append(f"{t.name} fell from {t.before:.0f} to {t.now:.0f} {t.unit}")
        else:
            parts.append(f"{t.name} fell from {t.before:.1f} to {t.now:.1f}")
        counted.append((e.effort.llr, e.effort.onset_ms))
    if e.wander and e.wander.onset_ms is not None and e.wander.llr >= WANDER_SHOWN:
        parts.append(f"start times spread from ±{e.wander.before_min:.0f} to "
                     f"±{e.wander.now_min:.0f} minutes")
        counted.append((WANDER_WEIGHT * e.wander.llr, e.wander.onset_ms))
    d = e.decline
    if d.onset_ms is not None:
        counted.append((d.llr, d.onset_ms))
    rate = (f"{word} fell from {d.before_per_week:.1f} to {d.now_per_week:.1f} a week"
            if d.factor <= RATE_SHOWN else f"{word} held at about {d.now_per_week:.1f} a week")
    since = max(counted)[1] if counted else None
    text = (", ".join(parts) + "; " if parts else "") + rate
    if since is not None:
        text += f" since about {_day(since)}"
    risk_text = f"risk {100 * risk:.0f}%, " if risk is not None else ""
    text += (f" ({risk_text}evidence {e.total:.1f}: log-likelihood ratio of a decline over "
             "steady use, summed over the signals)")
    return text, since


def assess(device: str, customer: str | None, product: str | None, consent: str | None,
           h: History | None, reps: dict[int, float] | None = None,
           model: ChurnModel | None = None,
           forced: Sequence[tuple[int, int]] = (),
           coached: Sequence[tuple[int, int]] = ()) -> Risk | None:
    """The device's churn risk with its reason, or None (not at risk, or not a product people
    use by habit). `reps`: a mirror's reps per session by its start (personal data: pass it
    only for a device that shares it; it is ignored otherwise). `model`: the decision
    (default: the shipped one). `forced`: as evidence's."""
    if product not in ("bike", "mirror"):
        return None
    word = ACTIVITY_WORD[product]
    if consent == "essential":
        return Risk(device, customer, product, CONSENT,
                    f"consent narrowed to essential: its {word} are no longer visible", None)
    if h is None or h.first_ms is None:
        return None
    last = max(a.start_ms for a in h.acts)
    idle_days = (h.at_ms - last) / DAY_MS
    if idle_days >= LAPSED_DAYS:
        return Risk(device, customer, product, LAPSED,
                    f"no {word} for {idle_days:.0f} days (last on {_day(last)})", last)
    e = evidence(h, product, permits(consent, PERSONAL), reps, forced, coached)
    if e is None:
        return None
    m = model or churn_model.shipped()
    risk = e.risk(m)
    if risk < m.threshold:
        return None
    text, since = reason(word, e, risk)
    return Risk(device, customer, product, DECLINING, text, since)
