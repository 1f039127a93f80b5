"""A rollout's plan, as plain arithmetic: which devices go in which wave, and when a wave has
failed too often. No store, no clock.

Order: the targets sorted by sha256("<rollout id>/<device id>"), a shuffle seeded by the
rollout, so the first 1% is a spread over the fleet (not the devices whose ids sort first)
and a device's place differs from one rollout to the next.

Waves: percentages of the targets, ascending, the last 100. Wave k holds the first
ceil(p_k% x N) devices of the order that no earlier wave holds, and at least one while
devices remain: 1% of 7 devices is one device. Waves left with no device are dropped.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

DEFAULT_WAVES = (1, 10, 50, 100)
MAX_WAVES = 20


def order(rollout_id: str, devices: Iterable[str]) -> list[str]:
    """The devices in the rollout's seeded order."""
    return sorted(devices, key=lambda d: hashlib.sha256(f"{rollout_id}/{d}".encode()).digest())


def check(percents: Sequence[float]) -> list[str]:
    """Why these wave percentages cannot be a plan (empty: they can)."""
    problems = []
    if not 1 <= len(percents) <= MAX_WAVES:
        problems.append(f"waves: 1..{MAX_WAVES} percentages")
    if any(not 0 < p <= 100 for p in percents):
        problems.append("waves: each percentage in (0, 100]")
    if any(b <= a for a, b in zip(percents, percents[1:], strict=False)):
        problems.append("waves: percentages must rise from one wave to the next")
    if percents and percents[-1] != 100:
        problems.append("waves: the last wave must be 100 (every device)")
    return problems


def sizes(n: int, percents: Sequence[float]) -> list[tuple[float, int]]:
    """(percent, devices) of each wave that gets a device, for n targets."""
    out: list[tuple[float, int]] = []
    done = 0
    for p in percents:
        if done >= n:
            break
        # Fraction: 0.1 x 30 is 3, where float arithmetic would give 3.0000000000000004 -> 4
        upto = min(n, max(done + 1, math.ceil(Fraction(str(p)) * n / 100)))
        out.append((p, upto - done))
        done = upto
    return out


def crossed(failed: int, size: int, threshold: float, accepted: int = 0) -> bool:
    """Whether a wave's failures (failure + rolled_back) are past the threshold: a rate
    above it, with more failures than ops accepted when they last resumed it."""
    return size > 0 and failed / size > threshold and failed > accepted


def describe(wave: int, failed: int, size: int, threshold: float) -> str:
    """'wave 1: 2 of 5 failed (40% > 10%)'."""
    return (f"wave {wave}: {failed} of {size} failed ({_percent(failed / size)} >"
            f" {_percent(threshold)})")


def _percent(ratio: float) -> str:
    return f"{round(ratio * 100, 1):g}%"
