"""Rides and sessions as the product sees them: runs of records with no pause longer than
GAP_MS between them, read from the store as one-minute buckets (Store.metric_buckets, in
SQL on both backends: the answer has one row per active minute, however fast the device
samples).

The simulator (fleetloop/fleet/habit.py) starts at most two activities a day, four to eight
hours apart, and samples every interval while one lasts; a real bike or mirror does the same
(it samples while someone uses it and sleeps otherwise). So a pause of more than GAP_MS ends
an activity, and a minute with at least one record counts as an active minute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud.store import Bucket, Store

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
WEEK_MS = 7 * DAY_MS
BUCKET_MS = MINUTE_MS
# A pause longer than this ends a ride or session: far above any sampling interval a device
# uses while active (1 s by default), far below the hours between two activities of a day.
GAP_MS = 15 * MINUTE_MS


@dataclass(frozen=True)
class Activity:
    """One ride or session: its first and last active minute, and the metric read in it."""

    start_ms: int
    end_ms: int  # end of its last active minute
    minutes: int  # minutes with at least one record
    mean: float  # the metric's mean over its records
    max: float
    records: int


def activities(buckets: Sequence[Bucket], gap_ms: int = GAP_MS) -> list[Activity]:
    """Split one-minute buckets (oldest first) into activities at pauses longer than gap_ms."""
    out: list[Activity] = []
    run: list[Bucket] = []
    for b in buckets:
        if run and b.start_ms - (run[-1].start_ms + BUCKET_MS) > gap_ms:
            out.append(_activity(run))
            run = []
        run.append(b)
    if run:
        out.append(_activity(run))
    return out


def _activity(run: Sequence[Bucket]) -> Activity:
    records = sum(b.count for b in run)
    return Activity(start_ms=run[0].start_ms, end_ms=run[-1].start_ms + BUCKET_MS,
                    minutes=len(run), mean=sum(b.mean * b.count for b in run) / records,
                    max=max(b.max for b in run), records=records)


def read(store: Store, device_id: str, metric: str, from_ms: int, to_ms: int) -> list[Activity]:
    """The device's activities seen through `metric` in [from_ms, to_ms): one bounded query
    (at most one row per minute of the range)."""
    return activities(store.metric_buckets(device_id, metric, from_ms, to_ms, BUCKET_MS))


def weekly_counts(acts: Sequence[Activity], at_ms: int, weeks: int) -> list[int]:
    """Activities started in each of the `weeks` weeks before at_ms, oldest week first."""
    counts = [0] * weeks
    for a in acts:
        back = (at_ms - 1 - a.start_ms) // WEEK_MS  # 0: the last week
        if 0 <= back < weeks:
            counts[weeks - 1 - back] += 1
    return counts
