"""Mirror users: the person training in front of a simulated smart fitness mirror.

A user trains about `sessions_per_week` times a week (at most once a day) in a preferred slot
(morning, midday or evening), for about `session_minutes`. Streaks: after each day trained the
chance of training the next day rises by `streak_tendency` (relative, for up to STREAK_CAP
days); a missed day breaks the streak ("streak_end" in the truth). Some users disengage (their
rate halves every few weeks from a drawn week on).
Before a user who disengages starts to train less, their sessions shorten, their reps a
minute fall and their start time wanders (habit.Fade: the `fade_*` traits); a session's reps
also follow the day's form. Busy spells (habit.Spells) shorten and thin out sessions for a
few weeks now and then.
Samples during a session (device/profiles/mirror.py's names): session_active (True), reps (int,
cumulative in the session), brightness (int %), room_temp (deg C, 2 decimals, warms while
someone trains). Idle: no sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from .draws import MINUTE_MS, WEEK_MS, draws
from .habit import DailyHabit, DayPlan, Decay, Metrics, disengage_at, draw_precursors
from .truth import Truth

DISENGAGE_SHARE = 0.25
STREAK_CAP = 5  # days of streak that still raise the chance
MAX_DAILY_CHANCE = 0.95
WARMING_C = 1.6  # how much a session warms the room, at most
WARMING_TAU_MS = 20 * MINUTE_MS
SLOTS = {"morning": (6.0, 9.0), "midday": (11.5, 14.0), "evening": (17.5, 21.5)}


@dataclass(frozen=True)
class MirrorTraits:
    sessions_per_week: float  # with no streak going
    slot: str
    hour: float  # preferred start, UTC
    session_minutes: float
    streak_tendency: float
    reps_per_minute: float
    room_c: float
    disengages: bool
    disengage_at_ms: int | None
    half_life_weeks: float
    # precursors of disengagement (habit.FadeTraits)
    fade_at_ms: int | None = None
    fade_weeks: float = 0.0
    fade_minutes: float = 0.0
    fade_effort: float = 0.0
    # busy spells: [start_ms, end_ms, share of the length gone, factor on the rate]
    spells: tuple[tuple[int, int, float, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["spells"] = [list(s) for s in self.spells]  # as JSON gives them back
        return out


def draw_traits(seed: int, device_id: str, start_ms: int, end_ms: int) -> MirrorTraits:
    rng = draws(seed, device_id, "traits")
    slot = sorted(SLOTS)[rng.randrange(len(SLOTS))]
    low, high = SLOTS[slot]
    disengages = rng.random() < DISENGAGE_SHARE
    traits = MirrorTraits(
        sessions_per_week=round(rng.uniform(1.0, 5.0), 2),
        slot=slot,
        hour=round(rng.uniform(low, high), 2),
        session_minutes=round(rng.uniform(15.0, 50.0), 1),
        streak_tendency=round(rng.uniform(0.0, 0.6), 3),
        reps_per_minute=round(rng.uniform(6.0, 18.0), 1),
        room_c=round(rng.uniform(19.0, 23.0), 2),
        disengages=disengages,
        disengage_at_ms=disengage_at(rng.random(), start_ms, end_ms) if disengages else None,
        half_life_weeks=round(rng.uniform(2.0, 3.0), 2),
    )
    return replace(traits, **draw_precursors(seed, device_id, start_ms, end_ms,
                                             traits.disengage_at_ms))


class MirrorUser(DailyHabit):
    product = "mirror"

    def __init__(self, device_id: str, seed: int, start_ms: int, end_ms: int, truth: Truth,
                 traits: MirrorTraits) -> None:
        super().__init__(device_id, seed, start_ms, end_ms, truth, traits.hour,
                         traits.session_minutes, traits)
        self.traits = traits
        self.noise = draws(seed, device_id, "noise")
        self.decay = Decay(traits.disengage_at_ms, int(traits.half_life_weeks * WEEK_MS),
                           start_ms)
        self.pace = traits.reps_per_minute  # reps a minute in the session in progress
        self.streak = 0  # consecutive days trained, up to the last day decided
        self.decided: dict[int, tuple[int, int]] = {}  # session start -> (day, streak day)
        self.day = 0  # the day of the session in progress
        self.streak_day = 0  # and its place in the streak
        self.reps = 0.0
        self.brightness = 90

    def _observe(self, t_ms: int, settings: Mapping[str, int]) -> None:
        self._follow_fade(t_ms, False)
        began = self.decay.advance(t_ms, False)
        if began is not None:
            self.truth.event(self.device_id, began, "disengage",
                             half_life_weeks=self.traits.half_life_weeks)

    def chance_today(self, at_ms: int) -> float:
        t = self.traits
        lift = 1.0 + t.streak_tendency * min(self.streak, STREAK_CAP)
        return min(MAX_DAILY_CHANCE, t.sessions_per_week / 7.0 * lift * self.decay.factor(at_ms))

    def _count(self, plan: DayPlan, settings: Mapping[str, int]) -> int:
        if plan.chance < self.chance_today(plan.slot_ms) * self.spells.rate(plan.slot_ms):
            self.streak += 1
            self.decided[plan.slot_ms] = (plan.day, self.streak)
            return 1
        if self.streak:
            self.truth.event(self.device_id, plan.slot_ms, "streak_end", length=self.streak,
                             last_day=plan.day - 1)
            self.streak = 0
        return 0

    def _started(self, start: int, settings: Mapping[str, int]) -> None:
        self.day, self.streak_day = self.decided.pop(start)
        self.reps = 0.0
        self.brightness = self.noise.randint(80, 100)
        self.pace = self.traits.reps_per_minute * self.form * self.fade.effort(start)

    def _metrics(self, t_ms: int, settings: Mapping[str, int]) -> Metrics:
        minutes = settings["interval_ms"] / MINUTE_MS
        self.reps += self.pace * minutes * (0.6 + 0.8 * self.noise.random())
        warmed = WARMING_C * (1.0 - math.exp(-(t_ms - self.act_start) / WARMING_TAU_MS))
        return {
            "session_active": True,
            "reps": int(self.reps),
            "brightness": self.brightness,
            "room_temp": round(self.traits.room_c + warmed + 0.1 * self.noise.random(), 2),
        }

    def _finish(self, t_ms: int) -> None:
        self.truth.event(
            self.device_id, self.act_start, "session", end_ms=self.act_end,
            minutes=round((self.act_end - self.act_start) / MINUTE_MS, 1),
            reps=int(self.reps) if self.samples else None, streak_day=self.streak_day,
            day=self.day, samples=self.samples)
