"""A daily habit: someone who may use the product once a day (rarely twice) around a preferred
hour, and sometimes loses interest. The bike rider and the mirror user are daily habits that
differ in what they decide each day and what the product measures while they use it.

The day's decision is taken when the device first wakes after that day's slot, with the settings
the device holds then: a setting that arrives at noon changes the evening's decision. Between
activities the device sleeps (rest_ms) until one sampling interval after the next slot, so the
sample that finds an activity begun already covers its first interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .draws import DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS, day_draws
from .truth import Truth

Metrics = dict[str, int | float | bool]

SLOT_JITTER_MIN = 40.0  # standard deviation of the start around the preferred hour


@dataclass(frozen=True)
class DayPlan:
    day: int  # UTC days since the epoch
    slot_ms: int  # when the day's (first) activity would start
    chance: float  # uniform 0..1: the day's die, compared with the day's probability
    length: float  # this day's activity length as a share of the usual one
    gap_ms: int  # from the end of a first activity to the start of a second one


class Decay:
    """Disengagement: from `at_ms` on the usage rate halves every `half_life_ms` of data time,
    except while something halts it (a coaching responder under coach mode). Advanced at each
    call with the state that held since the previous call."""

    def __init__(self, at_ms: int | None, half_life_ms: int) -> None:
        self.at_ms = at_ms
        self.half_life_ms = half_life_ms
        self.decayed_ms = 0
        self.last_ms: int | None = None
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

    def factor(self) -> float:
        if not self.decayed_ms:
            return 1.0
        return float(0.5 ** (self.decayed_ms / self.half_life_ms))


class DailyHabit:
    """The schedule shared by riders and mirror users; subclasses fill in the hooks."""

    product = ""

    def __init__(self, device_id: str, seed: int, start_ms: int, end_ms: int, truth: Truth,
                 hour: float, minutes: float) -> None:
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
        plan = self._plan(start_ms // DAY_MS)
        while plan.slot_ms < start_ms:
            plan = self._plan(plan.day + 1)
        self.plan = plan

    # -- the Behaviour interface -------------------------------------------------------------

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> Metrics | None:
        if self.active:
            return self._active_sample(t_ms, settings)
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
        slot = day * DAY_MS + int(self.hour * HOUR_MS + rng.gauss(0.0, SLOT_JITTER_MIN) * MINUTE_MS)
        return DayPlan(day, slot, rng.random(), rng.uniform(0.8, 1.2),
                       int(rng.uniform(4.0, 8.0) * HOUR_MS))

    def _decide_day(self, settings: Mapping[str, int]) -> None:
        plan = self.plan
        self.plan = self._plan(plan.day + 1)
        length_ms = int(self.minutes * plan.length * MINUTE_MS)
        if plan.slot_ms + length_ms > self.end_ms:
            return  # the span ends first: the day is not decided at all
        count = self._count(plan, settings)
        start = plan.slot_ms
        for _ in range(count):
            if start + length_ms > self.end_ms:
                break  # never plan an activity the span cannot hold: no sample after end_ms
            self.starts.append((start, start + length_ms))
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
        self._started(start, settings)

    # -- hooks ---------------------------------------------------------------------------------

    def _observe(self, t_ms: int, settings: Mapping[str, int]) -> None:
        """Called at each idle call: follow what the settings do to the person."""

    def _count(self, plan: DayPlan, settings: Mapping[str, int]) -> int:
        """How many activities the person starts on plan's day (0, 1 or 2)."""
        raise NotImplementedError

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
