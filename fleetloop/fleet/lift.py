"""The truth's range for a policy's measured lift: where the cloud's figure should fall if it
measured the experiment right, worked out from the simulator's truth alone.

The cloud measures a policy (see docs/loop.md, "Policies") by a difference in differences: per
device, the outcome KPI over the evaluation window minus the same KPI over the same length of
record time just before it; the lift is the treatment arm's mean of that minus the control
arm's. Write a device's outcome as Y = Y0 + tau: Y0 what it would have been without the change
(its counterfactual) and tau what the change did to it. Then

    lift = mean_T(tau) + (mean_T(Y0) - mean_C(Y0))
         = effect      + imbalance

- effect: what the change really did to the treatment arm over the window, in the KPI's units
  (for coach mode on rides per week: the extra rides the treatment's responders actually took,
  per device and week; non-responders add exactly 0). The truth says what each treatment device
  did; what it would have done without the change is found by replaying its person with the
  settings it had before: a day's decisions come from the day's own dice (common random
  numbers, fleetloop/fleet/draws.py), so the replay and the real run differ only by the change.
  Before the window nothing had changed, so both share the baseline the truth records.
- imbalance: the luck of the random split. Both arms' counterfactual outcomes are known (the
  control's is what the truth says it did), so its spread is known too: with n_T and n_C
  devices and sample variances s_T^2 and s_C^2 of Y0 in each arm, its standard error is
  se = sqrt(s_T^2 / n_T + s_C^2 / n_C). The range bounds it by Z standard errors.

The range is [effect - Z se, effect + Z se]. It also carries what a perfect measurement of
these very arms would give (`truth_lift`, effect plus the actual imbalance): the cloud's figure
minus that is its measurement error alone (activities cut by the window's edges). Activities
count as the cloud can see them: a ride the device slept through entirely has no samples, and
an owner who shares only `essential` data sends none (their device takes part in the cloud's
experiment when it never reported a narrower consent, and shows 0 in both periods). Each replayed control device should repeat the truth
exactly; `replay_mismatches` counts those that did not (a check of the replay itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from device.settings import DEFAULTS
from fleetloop.fleet.behaviour import build, drive
from fleetloop.fleet.draws import DAY_MS, WEEK_MS
from fleetloop.fleet.options import BASE_SETTINGS
from fleetloop.fleet.truth import Truth
from protocol import consent as consent_tiers

Z = 2.576  # two-sided 99%: the imbalance of a random split falls outside once in a hundred
# KPI -> (product, the truth's event kind it counts). Counts per week, as cloud.loop.kpis has them.
COUNT_KPIS = {"rides_per_week": ("bike", "ride"), "sessions_per_week": ("mirror", "session")}
# The metric whose records mark an activity in the cloud (cloud.loop.kpis.ACTIVITY_METRIC).
ACTIVITY_METRIC = {"bike": "power", "mirror": "session_active"}


class LiftError(ValueError):
    """A request the truth cannot answer (an unknown KPI, an empty arm, a bad window)."""


@dataclass(frozen=True)
class Window:
    """An evaluation window on record time, [start_ms, end_ms); its baseline is the same length
    just before it."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise LiftError(f"window ends at {self.end_ms}, not after its start {self.start_ms}")

    @property
    def length_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def weeks(self) -> float:
        return self.length_ms / WEEK_MS

    @property
    def before(self) -> Window:
        return Window(self.start_ms - self.length_ms, self.start_ms)


@dataclass(frozen=True)
class LiftRange:
    kpi: str
    window: Window
    treatment_n: int
    control_n: int
    effect: float  # what the change did: mean over the treatment of its own change, KPI units
    imbalance: float  # mean_T(Y0) - mean_C(Y0): the split's luck, as the truth knows it
    se: float  # standard error of the imbalance under a random split
    z: float
    low: float  # effect - z se
    high: float  # effect + z se
    truth_lift: float  # effect + imbalance: what a perfect measurement of these arms gives
    changed: int  # treatment devices the change altered at all (their Y differs from Y0)
    replay_mismatches: int  # control devices whose replay did not repeat the window's truth

    def holds(self, lift: float) -> bool:
        return self.low <= lift <= self.high

    def as_dict(self) -> dict[str, float | int | str]:
        return {"kpi": self.kpi, "window_start_ms": self.window.start_ms,
                "window_end_ms": self.window.end_ms, "treatment_n": self.treatment_n,
                "control_n": self.control_n, "effect": round(self.effect, 3),
                "imbalance": round(self.imbalance, 3), "se": round(self.se, 3), "z": self.z,
                "low": round(self.low, 3), "high": round(self.high, 3),
                "truth_lift": round(self.truth_lift, 3), "changed": self.changed,
                "replay_mismatches": self.replay_mismatches}


def kpi_event(kpi: str) -> tuple[str, str]:
    try:
        return COUNT_KPIS[kpi]
    except KeyError:
        raise LiftError(f"no truth for KPI {kpi!r}: choose from {', '.join(COUNT_KPIS)}") from None


def starts(events: Sequence[Mapping[str, object]], kind: str) -> list[int]:
    """Start times of the activities of `kind` the product measured (a ride the device slept
    through entirely never reached the cloud: the truth marks it with 0 samples)."""
    return sorted(int(str(e["t"])) for e in events
                  if e["kind"] == kind and e.get("samples", 1) not in (0, None))


def seen(truth: Truth, device: str, events: Sequence[Mapping[str, object]], kind: str
         ) -> list[int]:
    """The activity starts the cloud could see: none when the owner's consent (the truth's
    `consent` event) keeps the metric that marks an activity on the device."""
    product = truth.devices[device].product
    granted = truth.events(kind="consent", device=device)
    tier = str(granted[-1]["tier"]) if granted else consent_tiers.ESSENTIAL
    needed = consent_tiers.METRIC_TIERS[product][ACTIVITY_METRIC[product]]
    if consent_tiers.rank(tier) < consent_tiers.rank(needed):
        return []
    return starts(events, kind)


def per_week(times: Sequence[int], window: Window) -> float:
    return sum(1 for t in times if window.start_ms <= t < window.end_ms) / window.weeks


def outcome(times: Sequence[int], window: Window) -> float:
    """The contract's per-device outcome: the KPI over the window minus over the baseline."""
    return per_week(times, window) - per_week(times, window.before)


def base_settings(product: str) -> dict[str, int]:
    """What a simulated device runs with before the cloud says anything."""
    return {**DEFAULTS, **BASE_SETTINGS[product]}


def replay(truth: Truth, device: str, until_ms: int,
           settings: Mapping[str, int] | None = None) -> list[dict[str, object]]:
    """The device's events as they would have been under `settings` throughout (default: the
    simulator's base settings), from the span's start to until_ms: the same person, the same
    dice. Pure: a scratch truth collects them."""
    product = truth.devices[device].product
    scratch = Truth(truth.seed, truth.start_ms, truth.end_ms, truth.speed)
    behaviour = build(device, product, truth.seed, truth.start_ms, truth.end_ms, scratch)
    for _ in drive(behaviour, truth.start_ms, min(until_ms, truth.end_ms),
                   settings if settings is not None else base_settings(product)):
        pass
    return scratch.events(device=device)


def lift_range(truth: Truth, kpi: str, treatment: Sequence[str], control: Sequence[str],
               window: Window, z: float = Z,
               base: Mapping[str, int] | None = None) -> LiftRange:
    """The range the measured lift of an experiment with these arms should fall in (see the
    module's docstring). The arms are the devices the cloud measured; `base` is the settings
    they ran with before the change (default: the simulator's)."""
    product, kind = kpi_event(kpi)
    if not treatment or not control:
        raise LiftError("both arms need at least one device")
    for d in (*treatment, *control):
        if d not in truth.devices:
            raise LiftError(f"{d} is not in the truth")
        if truth.devices[d].product != product:
            raise LiftError(f"{d} is a {truth.devices[d].product}, {kpi} is a {product} KPI")
    until = window.end_ms + DAY_MS  # an activity begun in the window is recorded when it ends
    y0_t, taus = [], []
    changed = 0
    for d in treatment:
        real = seen(truth, d, truth.events(device=d), kind)
        alone = seen(truth, d, replay(truth, d, until, base), kind)
        # Before the window nothing had changed yet: the baseline is what really happened
        # there (a ride before the device first booted went unmeasured, and stays so).
        before = per_week(real, window.before)
        y0_t.append(per_week(alone, window) - before)
        taus.append(per_week(real, window) - per_week(alone, window))
        changed += _in(real, window) != _in(alone, window)
    y0_c, mismatches = [], 0
    for d in control:
        real = seen(truth, d, truth.events(device=d), kind)
        mismatches += _in(real, window) != _in(
            seen(truth, d, replay(truth, d, until, base), kind), window)
        y0_c.append(outcome(real, window))
    effect = _mean(taus)
    imbalance = _mean(y0_t) - _mean(y0_c)
    se = math.sqrt(_var(y0_t) / len(y0_t) + _var(y0_c) / len(y0_c))
    return LiftRange(kpi, window, len(treatment), len(control), effect, imbalance, se, z,
                     effect - z * se, effect + z * se, effect + imbalance, changed, mismatches)


def _in(times: Sequence[int], window: Window) -> list[int]:
    return [t for t in times if window.start_ms <= t < window.end_ms]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _var(xs: Sequence[float]) -> float:
    """Sample variance (0 for a single value: one device says nothing about the spread)."""
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
