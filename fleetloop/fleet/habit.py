"""A daily habit: someone who may use the product once a day (rarely twice) around a preferred
hour, and sometimes loses interest. The bike rider and the mirror user are daily habits that
differ in what they decide each day and what the product measures while they use it.

The day's decision is taken when the device first wakes after that day's slot, with the settings
the device holds then: a setting that arrives at noon changes the evening's decision. Between
activities the device sleeps (rest_ms) until one sampling interval after the next slot, so the
sample that finds an activity begun already covers its first interval.

People who drift away show it before their visits thin out: a few weeks before the rate starts
to decay (Decay) their activities shorten, their effort drops and their start time wanders
(Fade). Most who disengage do so; some stop abruptly with no warning (a move, an injury).
And everyone, leaving or not, goes through busy spells now and then (Spells): a few weeks of
shorter and fewer activities that pass. A churn model has to tell the two apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .draws import DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS, day_draws, draws
from .truth import Truth

Metrics = dict[str, int | float | bool]

SLOT_JITTER_MIN = 40.0  # standard deviation of the start around the preferred hour
FORM = (0.88, 1.12)  # a day's effort against the person's usual: some days go better
# Precursors of disengagement (Fade): the share of those who disengage who show them, how
# many weeks before the decay they begin, and how much of the activity's length and effort is
# gone when the decay begins. The slide goes on at the same pace afterwards, down to twice
# that loss; the start's spread around the preferred hour grows up to WANDER_MAX times.
FADE_SHARE = 0.85
FADE_WEEKS = (1.5, 4.0)
FADE_MINUTES = (0.12, 0.35)
FADE_EFFORT = (0.05, 0.15)
WANDER_MAX = 2.5
# Busy spells, everyone's: they begin at a mean gap of SPELL_GAP_WEEKS (the first one may be
# under way when the span starts), last SPELL_WEEKS, cut the activity's length by a share of
# SPELL_MINUTES and multiply the rate by a factor of SPELL_RATE.
SPELL_GAP_WEEKS = 10.0
SPELL_WEEKS = (1.5, 4.0)
SPELL_MINUTES = (0.1, 0.3)
SPELL_RATE = (0.6, 1.0)


@dataclass(frozen=True)
class DayPlan:
    day: int  # UTC days since the epoch
    slot_ms: int  # when the day's (first) activity would start
    chance: float  # uniform 0..1: the day's die, compared with the day's probability
    length: float  # this day's activity length as a share of the usual one
    gap_ms: int  # from the end of a first activity to the start of a second one
    form: float  # this day's effort as a share of the usual one


class Elapsed:
    """Data time spent since `at_ms`, except while something halts it (a coaching responder
    under coach mode). Advanced at each call with the state that held since the previous
    call."""

    def __init__(self, at_ms: int | None, since_ms: int | None = None) -> None:
        self.at_ms = at_ms
        self.decayed_ms = 0
        # since_ms: when the person's time starts to count (the span's start). The person lives
        # through the hours before their device first samples (a product that boots late, a
        # replay that samples from the start), so those hours count the same either way.
        self.last_ms: int | None = since_ms
        self.halted = False

    def advance(self, t_ms: int, halted: bool) -> int | None:
        """Account for data time up to t_ms; returns when decay began if it began just now."""
        began = None
        if self.at_ms is not None and self.last_ms is not None and not self.halted:
            since = max(self.last_ms, self.at_ms)
            if t_ms > since:
                if self.decayed_ms == 0:
                    began = since
                self.decayed_ms += t_ms - since
        self.last_ms = t_ms if self.last_ms is None else max(self.last_ms, t_ms)
        self.halted = halted
        return began

    def elapsed_at(self, ref_ms: int) -> int:
        """The data time spent as of ref_ms, from what was accounted at the last advance and
        the state that holds since. A person's plans read it at a moment of their own day (its
        start, an activity's start), never at whichever sample happened to come last: a device
        that samples on another schedule (a restart, a replay) then plans the same day."""
        if self.at_ms is None or self.last_ms is None or self.halted:
            return self.decayed_ms
        return max(0, self.decayed_ms + max(ref_ms, self.at_ms) - max(self.last_ms, self.at_ms))


class Decay(Elapsed):
    """Disengagement: from `at_ms` on the usage rate halves every `half_life_ms` of data time,
    except while something halts it."""

    def __init__(self, at_ms: int | None, half_life_ms: int, since_ms: int | None = None) -> None:
        super().__init__(at_ms, since_ms)
        self.half_life_ms = half_life_ms

    def factor(self, at_ms: int) -> float:
        elapsed = self.elapsed_at(at_ms)
        if not elapsed:
            return 1.0
        return float(0.5 ** (elapsed / self.half_life_ms))


@dataclass(frozen=True)
class FadeTraits:
    fade_at_ms: int | None  # when the precursors begin (None: no precursors)
    fade_weeks: float  # ... that many weeks before the decay (0: an abrupt stop)
    fade_minutes: float  # share of the activity's length gone when the decay begins
    fade_effort: float  # share of the effort (power, reps a minute) gone by then

    @classmethod
    def of(cls, traits: Any) -> FadeTraits:
        """The fade_* members of a person's traits."""
        return cls(traits.fade_at_ms, traits.fade_weeks, traits.fade_minutes,
                   traits.fade_effort)


NO_FADE = FadeTraits(None, 0.0, 0.0, 0.0)


def draw_fade(seed: int, device_id: str, start_ms: int, disengage_at_ms: int | None
              ) -> FadeTraits:
    """The precursors of someone who disengages at disengage_at_ms, from their own generator
    (the older traits keep their draws). They begin no earlier than the span."""
    if disengage_at_ms is None:
        return NO_FADE
    rng = draws(seed, device_id, "fade")
    shows = rng.random() < FADE_SHARE
    weeks, minutes, effort = (rng.uniform(*FADE_WEEKS), rng.uniform(*FADE_MINUTES),
                              rng.uniform(*FADE_EFFORT))
    if not shows:
        return NO_FADE
    lead_ms = min(int(weeks * WEEK_MS), disengage_at_ms - start_ms)
    return FadeTraits(disengage_at_ms - lead_ms, round(lead_ms / WEEK_MS, 2),
                      round(minutes, 3), round(effort, 3))


@dataclass(frozen=True)
class Spell:
    start_ms: int
    end_ms: int
    minutes: float  # share of the activity's length gone while it lasts
    rate: float  # factor on the rate while it lasts


def draw_spells(seed: int, device_id: str, start_ms: int, end_ms: int) -> tuple[Spell, ...]:
    """Someone's busy spells over the span, from their own generator."""
    rng = draws(seed, device_id, "spells")
    out: list[Spell] = []
    # start one spell's length early, so a spell may be under way at the span's start
    t = start_ms - int(SPELL_WEEKS[1] * WEEK_MS)
    while True:
        t += int(rng.expovariate(1.0 / SPELL_GAP_WEEKS) * WEEK_MS)
        if t > end_ms:
            return tuple(out)
        length = int(rng.uniform(*SPELL_WEEKS) * WEEK_MS)
        minutes, rate = round(rng.uniform(*SPELL_MINUTES), 3), round(rng.uniform(*SPELL_RATE), 3)
        if t + length > start_ms:
            out.append(Spell(t, t + length, minutes, rate))
        t += length


class Spells:
    """What the busy spells do at a moment: factors on length and rate (1.0 outside)."""

    def __init__(self, spells: Iterable[Spell]) -> None:
        self.spells = tuple(spells)

    def at(self, t_ms: int) -> Spell | None:
        return next((s for s in self.spells if s.start_ms <= t_ms < s.end_ms), None)

    def minutes(self, t_ms: int) -> float:
        s = self.at(t_ms)
        return 1.0 - s.minutes if s else 1.0

    def rate(self, t_ms: int) -> float:
        s = self.at(t_ms)
        return s.rate if s else 1.0


def draw_precursors(seed: int, device_id: str, start_ms: int, end_ms: int,
                    disengage_at_ms: int | None) -> dict[str, Any]:
    """The fade_* traits and the busy `spells` of a person (traits a dataclass takes)."""
    fade = draw_fade(seed, device_id, start_ms, disengage_at_ms)
    spells = tuple((s.start_ms, s.end_ms, s.minutes, s.rate)
                   for s in draw_spells(seed, device_id, start_ms, end_ms))
    return {**asdict(fade), "spells": spells}


class Fade(Elapsed):
    """The precursors as they stand: a linear slide from `fade_at_ms` that reaches the traits'
    losses when the decay begins (progress 1), and goes on to twice them."""

    def __init__(self, traits: FadeTraits, since_ms: int | None = None) -> None:
        super().__init__(traits.fade_at_ms, since_ms)
        self.traits = traits
        self.lead_ms = max(1, int(traits.fade_weeks * WEEK_MS))

    def progress(self, at_ms: int) -> float:
        return min(2.0, self.elapsed_at(at_ms) / self.lead_ms)

    def minutes(self, at_ms: int) -> float:
        return 1.0 - self.traits.fade_minutes * self.progress(at_ms)

    def effort(self, at_ms: int) -> float:
        return 1.0 - self.traits.fade_effort * self.progress(at_ms)

    def wander(self, at_ms: int) -> float:
        return 1.0 + (WANDER_MAX - 1.0) * self.progress(at_ms) / 2.0

    def record(self, truth: Truth, device_id: str, t_ms: int) -> None:
        """The truth's `fade` event: the precursors began at t_ms."""
        truth.event(device_id, t_ms, "fade", weeks=self.traits.fade_weeks,
                    minutes=self.traits.fade_minutes, effort=self.traits.fade_effort)


class DailyHabit:
    """The schedule shared by riders and mirror users; subclasses fill in the hooks."""

    product = ""

    def __init__(self, device_id: str, seed: int, start_ms: int, end_ms: int, truth: Truth,
                 hour: float, minutes: float, traits: Any) -> None:
        self.device_id = device_id
        self.seed = seed
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.truth = truth
        self.hour = hour
        self.minutes = minutes
        self.active = False
        self.act_start = 0
        self.act_end = 0
        self.samples = 0
        self.starts: list[tuple[int, int]] = []  # decided, not begun: (start, end)
        self.forms: dict[int, float] = {}  # decided start -> that day's form
        self.form = 1.0  # the activity in progress's
        # `traits` carries the fade_* members and the spells (draw_precursors)
        self.fade = Fade(FadeTraits.of(traits), start_ms)
        self.spells = Spells(Spell(int(a), int(b), m, r) for a, b, m, r in traits.spells)
        plan = self._plan(start_ms // DAY_MS)
        while plan.slot_ms < start_ms:
            plan = self._plan(plan.day + 1)
        self.plan = plan

    # -- the Behaviour interface -------------------------------------------------------------

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> Metrics | None:
        if self.active:
            if t_ms <= self.act_end + settings["interval_ms"]:  # on time, or a little late
                return self._active_sample(t_ms, settings)
            # The device was not sampling when the activity ended (it was restarting for a
            # config or off): the rest of it went unmeasured, and a sample now, hours later,
            # would be a ride at a time the rider is not riding.
            self.active = False
            self._finish(self.act_end)
        self._observe(t_ms, settings)
        while self.plan.slot_ms <= t_ms:
            self._decide_day(settings)
        while self.starts and self.starts[0][0] <= t_ms:
            start, end = self.starts.pop(0)
            self._begin(start, end, settings)
            if end >= t_ms - settings["interval_ms"]:
                return self._active_sample(t_ms, settings)
            # The device slept through all of it (it was off or late): it happened unmeasured.
            self.active = False
            self._finish(end)
        return None

    def rest_ms(self, t_ms: int, settings: Mapping[str, int]) -> int:
        upcoming = self.starts[0][0] if self.starts else self.plan.slot_ms
        if upcoming > self.end_ms:
            return max(1, self.end_ms + 1 - t_ms)
        return max(1, upcoming + settings["interval_ms"] - t_ms)

    # -- the schedule --------------------------------------------------------------------------

    def _plan(self, day: int) -> DayPlan:
        rng = day_draws(self.seed, self.device_id, day)
        # the start's spread around the hour grows as a fading habit wanders
        jitter = rng.gauss(0.0, SLOT_JITTER_MIN) * self.fade.wander(day * DAY_MS)
        slot = day * DAY_MS + int(self.hour * HOUR_MS + jitter * MINUTE_MS)
        # new draws go last: the earlier ones stay what they were
        return DayPlan(day, slot, rng.random(), rng.uniform(0.8, 1.2),
                       int(rng.uniform(4.0, 8.0) * HOUR_MS), rng.uniform(*FORM))

    def _decide_day(self, settings: Mapping[str, int]) -> None:
        plan = self.plan
        self.plan = self._plan(plan.day + 1)
        length_ms = int(self.minutes * plan.length * self._length_factor(plan.slot_ms)
                        * MINUTE_MS)
        if plan.slot_ms + length_ms > self.end_ms:
            return  # the span ends first: the day is not decided at all
        count = self._count(plan, settings)
        start = plan.slot_ms
        for _ in range(count):
            if start + length_ms > self.end_ms:
                break  # never plan an activity the span cannot hold: no sample after end_ms
            self.starts.append((start, start + length_ms))
            self.forms[start] = plan.form
            start += length_ms + plan.gap_ms

    def _active_sample(self, t_ms: int, settings: Mapping[str, int]) -> Metrics:
        metrics = self._metrics(t_ms, settings)
        self.samples += 1
        if t_ms + settings["interval_ms"] > self.act_end:
            self.active = False
            self._finish(t_ms)
        return metrics

    def _begin(self, start: int, end: int, settings: Mapping[str, int]) -> None:
        self.active = True
        self.act_start = start
        self.act_end = end
        self.samples = 0
        self.form = self.forms.pop(start, 1.0)
        self._started(start, settings)

    # -- hooks ---------------------------------------------------------------------------------

    def _observe(self, t_ms: int, settings: Mapping[str, int]) -> None:
        """Called at each idle call: follow what the settings do to the person."""

    def _count(self, plan: DayPlan, settings: Mapping[str, int]) -> int:
        """How many activities the person starts on plan's day (0, 1 or 2)."""
        raise NotImplementedError

    def _length_factor(self, t_ms: int) -> float:
        """The activity length at t_ms as a share of the usual one (precursors and busy
        spells shorten it)."""
        return self.fade.minutes(t_ms) * self.spells.minutes(t_ms)

    def _follow_fade(self, t_ms: int, halted: bool) -> None:
        """Advance the precursors to t_ms (halted: coaching holds them); the truth's `fade`
        event when they begin."""
        began = self.fade.advance(t_ms, halted)
        if began is not None:
            self.fade.record(self.truth, self.device_id, began)

    def _started(self, start: int, settings: Mapping[str, int]) -> None:
        """An activity began at `start`: reset what it accumulates."""

    def _metrics(self, t_ms: int, settings: Mapping[str, int]) -> Metrics:
        """The summary of the interval ending at t_ms, during an activity."""
        raise NotImplementedError

    def _finish(self, t_ms: int) -> None:
        """The activity ended (its last sample was at t_ms): record it in the truth."""
        raise NotImplementedError


def rate_count(per_week: float, chance: float) -> int:
    """Activities today for a weekly rate: the whole part of per_week/7, plus one more when the
    day's die falls under the fraction (so the expected weekly count is per_week)."""
    per_day = per_week / 7.0
    whole = int(per_day)
    return whole + (1 if chance < per_day - whole else 0)


def disengage_at(rng_uniform: float, start_ms: int, end_ms: int) -> int:
    """A disengagement start somewhere after the first week and before the last two."""
    weeks = max(1.0, (end_ms - start_ms) / WEEK_MS - 2.0)
    return start_ms + int((1.0 + rng_uniform * (weeks - 1.0)) * WEEK_MS)
