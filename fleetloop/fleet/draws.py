"""Data-time units and the random draws of simulated behaviours.

Every draw comes from a generator seeded by (fleet seed, device id, purpose), so the same seed
and id give the same traits and the same day-by-day decisions however often, and at whatever
wall-clock moments, the device happened to sample. A day's decisions have their own generator
(`day_draws`): a rider's Tuesday does not depend on how many samples Monday's ride produced, and
two runs that differ only in a setting see the same dice (common random numbers), so the effect
of that setting is measured without noise from the draws themselves.
"""

from __future__ import annotations

import random

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS


def draws(seed: int, device_id: str, purpose: str) -> random.Random:
    # A str seed is hashed with SHA-512 by random.seed: stable across runs and PYTHONHASHSEED.
    return random.Random(f"{seed}/{device_id}/{purpose}")


def day_draws(seed: int, device_id: str, day: int) -> random.Random:
    """The generator of one day's decisions (`day` counts UTC days since the epoch)."""
    return random.Random(f"{seed}/{device_id}/day/{day}")


def span_weeks(start_ms: int, end_ms: int) -> float:
    return (end_ms - start_ms) / WEEK_MS
