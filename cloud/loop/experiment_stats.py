"""The arithmetic of an experiment, pure: the lift of a change with its 95% confidence
interval, and the decision the interval leads to.

Each device's outcome is a difference in differences' first difference: the outcome KPI over
the evaluation window minus the same KPI over the same length of record time just before it
(cloud.loop.experiment_kpis). Subtracting its own past takes out most of what differs from
one person to the next (a keen rider rides a lot in both periods), so what is left is mostly
the change and the noise. The lift is the treatment arm's mean outcome minus the control
arm's: the second difference, which takes out what happened to everyone over the window (a
holiday, the season).

The interval is Welch's: the two arms may have different spreads (a change that helps only
some people widens the treatment's), so no pooled variance, and the Welch-Satterthwaite
degrees of freedom. With fewer than two devices in an arm there is no interval at all, and
the decision is the inconclusive one.

Decision (goal "increase"; mirrored for "decrease"): the whole interval above zero, keep; the
whole interval below zero, revert; otherwise extend by one window while extensions remain, and
revert when none do (inconclusive: the change is not shown to help, so the safe default is to
take it back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _stats

CONFIDENCE = 0.95
INCREASE = "increase"
DECREASE = "decrease"
GOALS = (INCREASE, DECREASE)
KEEP = "keep"
REVERT = "revert"
EXTEND = "extend"
DECISIONS = (KEEP, REVERT, EXTEND)


@dataclass(frozen=True)
class Lift:
    treatment_n: int
    control_n: int
    treatment_mean: float | None
    control_mean: float | None
    lift: float | None  # treatment mean minus control mean
    ci_low: float | None  # None: no interval (an arm with fewer than two devices)
    ci_high: float | None


def mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def variance(xs: Sequence[float]) -> float:
    """The sample variance (n - 1); 0 for fewer than two values."""
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def welch(treatment: Sequence[float], control: Sequence[float],
          confidence: float = CONFIDENCE) -> Lift:
    """The lift (treatment mean minus control mean) with its Welch interval."""
    nt, nc = len(treatment), len(control)
    mt, mc = mean(treatment), mean(control)
    if mt is None or mc is None:
        return Lift(nt, nc, mt, mc, None, None, None)
    diff = mt - mc
    if nt < 2 or nc < 2:
        return Lift(nt, nc, mt, mc, diff, None, None)
    at, ac = variance(treatment) / nt, variance(control) / nc
    se = math.sqrt(at + ac)
    if se == 0.0:  # every device of both arms moved by exactly its arm's mean
        return Lift(nt, nc, mt, mc, diff, diff, diff)
    # Welch-Satterthwaite (its denominator may underflow to 0 for a tiny spread: then the
    # pooled degrees of freedom, which Welch's never exceed)
    den = at * at / (nt - 1) + ac * ac / (nc - 1)
    df = min((at + ac) ** 2 / den, float(nt + nc - 2)) if den > 0 else float(nt + nc - 2)
    q = float(_stats.t.ppf(0.5 + confidence / 2, df))
    return Lift(nt, nc, mt, mc, diff, diff - q * se, diff + q * se)


def decide(lift: Lift, goal: str, extensions_left: int) -> str:
    """keep, revert or extend (the module doc's rule)."""
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {', '.join(GOALS)}")
    low, high = lift.ci_low, lift.ci_high
    if low is not None and high is not None:
        if goal == DECREASE:
            low, high = -high, -low
        if low > 0:
            return KEEP
        if high < 0:
            return REVERT
    return EXTEND if extensions_left > 0 else REVERT
