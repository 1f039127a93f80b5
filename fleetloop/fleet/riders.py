"""Bike riders: the person on a simulated exercise bike, with traits drawn per device.

A rider rides about `rides_per_week` times a week around a preferred hour, for about
`ride_minutes`, at an effort that depends on their fitness (FTP: the power they can hold for an
hour) and on what the bike's programme asks. What the settings do to them:
- coach_mode 1: a responder rides `coach_effect` more often (30-50%) and stops disengaging; a
  non-responder does not change.
- target_power_w above the rider's sustainable power (1.1 x FTP), or the hard programme (3) for
  a low-fitness rider: they are overreached and ride OVERREACH_FACTOR as often while it lasts.
- power follows target_power_w when it is set, capped at the sustainable power.
A free ride's effort varies from day to day (the day's form). Before a rider who disengages
starts to ride less, their rides shorten, their effort drops and their start time wanders
(habit.Fade: the `fade_*` traits), unless coaching holds them as it holds the decay. And
every rider has busy spells now and then (habit.Spells, the `spells` trait): a few weeks of
shorter and fewer rides that pass.
Samples (one per sampling interval during a ride) are those of device/profiles/bike.py:
cadence (int rpm), power (W, 1 decimal), speed (km/h, 1 decimal), heart_rate (int bpm, lagging
the effort).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from .draws import MINUTE_MS, WEEK_MS, draws
from .habit import DailyHabit, DayPlan, Decay, Metrics, disengage_at, draw_precursors, rate_count
from .truth import Truth

DISENGAGE_SHARE = 0.25
RESPONDER_SHARE = 0.5
SUSTAINABLE = 1.1  # x FTP: above this a target is more than the rider can keep up
LOW_FITNESS_FTP_W = 180.0  # below this the hard programme is too much
OVERREACH_FACTOR = 0.6
# Share of FTP each programme asks for (0: free ride, the rider's own effort trait).
PROGRAMME_LEVEL = {1: 0.55, 2: 0.72, 3: 0.92}
BLOCK_MINUTES = (2, 8)  # efforts change every few minutes
HR_TAU_MS = 60_000.0  # heart rate follows effort with about a minute's lag
# Preferred hours: early, lunch and evening riders.
HOURS = ((6.0, 8.5), (11.5, 13.5), (17.0, 21.0))


@dataclass(frozen=True)
class RiderTraits:
    rides_per_week: float
    hour: float  # preferred start, UTC
    ride_minutes: float
    effort: float  # share of FTP the rider chooses on a free ride
    ftp_w: float
    sustainable_w: float
    low_fitness: bool
    rest_hr: int
    max_hr: int
    disengages: bool
    disengage_at_ms: int | None
    half_life_weeks: float
    coach_responder: bool
    coach_effect: float  # 0 for non-responders
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


def draw_traits(seed: int, device_id: str, start_ms: int, end_ms: int) -> RiderTraits:
    rng = draws(seed, device_id, "traits")
    low, high = HOURS[rng.randrange(len(HOURS))]
    ftp = round(rng.uniform(120.0, 320.0), 1)
    disengages = rng.random() < DISENGAGE_SHARE
    responder = rng.random() < RESPONDER_SHARE
    rest_hr = rng.randint(48, 72)
    traits = RiderTraits(
        rides_per_week=round(rng.uniform(0.5, 6.0), 2),
        hour=round(rng.uniform(low, high), 2),
        ride_minutes=round(rng.uniform(20.0, 75.0), 1),
        effort=round(rng.uniform(0.55, 0.85), 3),
        ftp_w=ftp,
        sustainable_w=round(SUSTAINABLE * ftp, 1),
        low_fitness=ftp < LOW_FITNESS_FTP_W,
        rest_hr=rest_hr,
        max_hr=rng.randint(165, 200),
        disengages=disengages,
        disengage_at_ms=disengage_at(rng.random(), start_ms, end_ms) if disengages else None,
        half_life_weeks=round(rng.uniform(2.0, 3.0), 2),
        coach_responder=responder,
        coach_effect=round(rng.uniform(0.3, 0.5), 3) if responder else 0.0,
    )
    return replace(traits, **draw_precursors(seed, device_id, start_ms, end_ms,
                                             traits.disengage_at_ms))


class Rider(DailyHabit):
    product = "bike"

    def __init__(self, device_id: str, seed: int, start_ms: int, end_ms: int, truth: Truth,
                 traits: RiderTraits) -> None:
        super().__init__(device_id, seed, start_ms, end_ms, truth, traits.hour,
                         traits.ride_minutes, traits)
        self.traits = traits
        self.noise = draws(seed, device_id, "noise")
        self.decay = Decay(traits.disengage_at_ms, int(traits.half_life_weeks * WEEK_MS),
                           start_ms)
        self.effort_now = 1.0  # the fade's effort factor for the ride in progress
        self.overreached = False
        self.responded = False
        # the ride in progress
        self.hr = float(traits.rest_hr)
        self.level = traits.effort
        self.block_left_ms = 0
        self.power_sum = 0.0
        self.ride_settings: dict[str, int] = {}
        self._alpha_for: tuple[int, float] = (0, 0.0)

    # -- what the settings do to the rider ------------------------------------------------------

    def _coached(self, settings: Mapping[str, int]) -> bool:
        return self.traits.coach_responder and settings["coach_mode"] == 1

    def _too_hard(self, settings: Mapping[str, int]) -> bool:
        t = self.traits
        return (settings["target_power_w"] > t.sustainable_w
                or (settings["programme"] == 3 and t.low_fitness))

    def _observe(self, t_ms: int, settings: Mapping[str, int]) -> None:
        coached = self._coached(settings)
        self._follow_fade(t_ms, coached)
        began = self.decay.advance(t_ms, coached)
        if began is not None:
            self.truth.event(self.device_id, began, "disengage",
                             half_life_weeks=self.traits.half_life_weeks)
        too_hard = self._too_hard(settings)
        if too_hard != self.overreached:
            self.overreached = too_hard
            if too_hard:
                self.truth.event(self.device_id, t_ms, "overreached",
                                 target_power_w=settings["target_power_w"],
                                 programme=settings["programme"],
                                 sustainable_w=self.traits.sustainable_w)
            else:
                self.truth.event(self.device_id, t_ms, "recovered")

    def rides_per_week_now(self, settings: Mapping[str, int], at_ms: int) -> float:
        """The rider's rate at at_ms under these settings."""
        rate = self.traits.rides_per_week * self.decay.factor(at_ms)
        if self._coached(settings):
            rate *= 1.0 + self.traits.coach_effect
        if self.overreached:
            rate *= OVERREACH_FACTOR
        return rate

    def _count(self, plan: DayPlan, settings: Mapping[str, int]) -> int:
        rate = self.rides_per_week_now(settings, plan.slot_ms) * self.spells.rate(plan.slot_ms)
        return rate_count(rate, plan.chance)

    # -- a ride ---------------------------------------------------------------------------------

    def _started(self, start: int, settings: Mapping[str, int]) -> None:
        self.ride_settings = {k: settings[k] for k in ("coach_mode", "programme", "target_power_w")}
        self.hr = self.traits.rest_hr + 10.0
        self.block_left_ms = 0
        self.power_sum = 0.0
        self.effort_now = self.fade.effort(start)
        if self._coached(settings) and not self.responded:
            self.responded = True
            self.truth.event(self.device_id, start, "coach_response",
                             effect=self.traits.coach_effect)

    def _target_level(self, settings: Mapping[str, int]) -> float:
        """The share of FTP the rider aims at for the next few minutes."""
        t = self.traits
        target = settings["target_power_w"]
        if target:
            return min(float(target), t.sustainable_w) / t.ftp_w * self.effort_now
        base = PROGRAMME_LEVEL.get(settings["programme"], t.effort) * self.form
        return min(SUSTAINABLE, base * self.noise.uniform(0.85, 1.15)) * self.effort_now

    def _alpha(self, interval_ms: int) -> float:
        # exp() once per interval length, not once per sample
        if self._alpha_for[0] != interval_ms:
            self._alpha_for = (interval_ms, 1.0 - math.exp(-interval_ms / HR_TAU_MS))
        return self._alpha_for[1]

    def _metrics(self, t_ms: int, settings: Mapping[str, int]) -> Metrics:
        interval = settings["interval_ms"]
        rand = self.noise.random
        if self.block_left_ms <= 0:
            self.level = self._target_level(settings)
            self.block_left_ms = self.noise.randint(*BLOCK_MINUTES) * MINUTE_MS
        self.block_left_ms -= interval
        t = self.traits
        warm = min(1.0, 0.6 + 0.4 * (t_ms - self.act_start) / (5 * MINUTE_MS))
        power = t.ftp_w * self.level * warm * (0.96 + 0.08 * rand())
        share = power / t.ftp_w
        goal_hr = t.rest_hr + (t.max_hr - t.rest_hr) * min(1.0, 0.25 + 0.65 * share)
        self.hr += (goal_hr - self.hr) * self._alpha(interval)
        self.power_sum += power
        return {
            "cadence": int(62.0 + 30.0 * share + 6.0 * rand()),
            "power": round(power, 1),
            "speed": round(5.4 * power ** (1.0 / 3.0) + 0.6 * rand() - 0.3, 1),
            "heart_rate": int(self.hr + 3.0 * rand() - 1.5),
        }

    def _finish(self, t_ms: int) -> None:
        n = self.samples
        self.truth.event(
            self.device_id, self.act_start, "ride", end_ms=self.act_end,
            minutes=round((self.act_end - self.act_start) / MINUTE_MS, 1),
            mean_power_w=round(self.power_sum / n, 1) if n else None, samples=n,
            **self.ride_settings)

