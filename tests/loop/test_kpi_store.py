"""Outcome KPIs computed from stored telemetry, on SQLite and on PostgreSQL: rides and sessions
found from the gaps between records, the consent tiers they need, and the engine KPIs from
the shipped model over a held-out FD001 engine's stored flights."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.db import AnyDatabase, open_database
from cloud.loop import activity, kpis
from cloud.loop.activity import BUCKET_MS, DAY_MS, GAP_MS, MINUTE_MS, WEEK_MS
from cloud.loop.holdout import FLEET_UNITS
from cloud.store import Bucket, DeviceRow, Store
from fleetloop.fleet.engines import NAMES, load_trajectories

AT = 1_780_000_000_000 - 1_780_000_000_000 % DAY_MS  # a midnight, UTC
HOUR = 60 * MINUTE_MS


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyDatabase]:
    target: str | Path = tmp_path / "cloud.db"
    if request.param == "postgres":
        target = str(request.getfixturevalue("pg_url"))
    database = open_database(target)
    database.open()
    try:
        yield database
    finally:
        database.close()


def put(store: Store, device: str, product: str, samples: list[tuple[int, dict[str, Any]]],
        consent: str | None = None) -> DeviceRow:
    """The device and its records, as the ingest path leaves them."""
    rows = [(device, 0, seq, t, m, "gw", 1, None) for seq, (t, m) in enumerate(samples, 1)]
    with store.transaction():
        store.insert_device(DeviceRow(id=device, product=product, created_ms=0))
        store.insert_telemetry_values(rows)
        row = store.get_device(device)
        assert row is not None
        row = replace(row, last_seq=len(rows), records=len(rows), consent_tier=consent,
                      last_seen_ms=samples[-1][0] if samples else None)
        store.save_device(row)
    return row


def session(start: int, minutes: int, every_s: int, **metrics: Any) -> list[tuple[int, dict]]:
    return [(start + i * every_s * 1000, dict(metrics))
            for i in range(minutes * 60 // every_s)]


def rides(power: float) -> list[tuple[int, dict[str, Any]]]:
    """Four weeks of rides: Monday and Thursday evenings, 40 minutes at 1 s (the device's
    default interval), then a fortnight off; power rising by 5 W a ride."""
    out: list[tuple[int, dict[str, Any]]] = []
    first_day = AT - 6 * WEEK_MS
    for n, day in enumerate(d for week in range(4) for d in (0, 3)):
        start = first_day + (7 * (n // 2) + day) * DAY_MS + 18 * HOUR
        out += session(start, 40, 1, power=power + 5 * n, cadence=80, heart_rate=140)
    return out


def value(k: kpis.DeviceKpis, name: str) -> kpis.Kpi:
    return next(x for x in k.kpis if x.name == name)


def test_bike_kpis_from_the_gaps_between_records(db: AnyDatabase) -> None:
    with db.connection() as store:
        row = put(store, "bike-1", "bike", rides(150.0))
        got = kpis.device_kpis(store, row, AT)
    # the last four weeks before AT hold rides 5..8 only (weeks 3 and 4 of six)
    assert value(got, "rides_per_week").value == 1.0
    assert value(got, "active_minutes_per_week").value == 40.0
    assert value(got, "power_mean_w").value == pytest.approx(150 + 5 * 5.5, abs=0.1)
    # 5 W a ride, two rides a week: 10 W a week
    assert value(got, "power_trend_w_per_week").value == pytest.approx(10.0, abs=1.0)
    assert value(got, "heart_rate_mean_bpm").value == 140.0
    assert got.weekly[-6:] == [2, 2, 2, 2, 0, 0]


def test_a_kpi_needing_personal_data_is_not_computed_without_consent(db: AnyDatabase) -> None:
    with db.connection() as store:
        bike = put(store, "bike-2", "bike", rides(150.0), consent="usage")
        mirror = put(store, "mirror-1", "mirror",
                     session(AT - DAY_MS + 7 * HOUR, 20, 10, session_active=True, reps=5),
                     consent="usage")
        got_bike = kpis.device_kpis(store, bike, AT)
        got_mirror = kpis.device_kpis(store, mirror, AT)
    hr = value(got_bike, "heart_rate_mean_bpm")
    assert (hr.status, hr.value, hr.tier) == (kpis.NOT_COMPUTED, None, "personal")
    assert "needs consent tier personal" in hr.reason and "usage" in hr.reason
    assert value(got_bike, "rides_per_week").status == kpis.OK
    for name in ("time_of_day", "reps_per_session"):
        k = value(got_mirror, name)
        assert (k.status, k.value) == (kpis.NOT_COMPUTED, None), name
    assert value(got_mirror, "sessions_per_week").value == 1.0
    with db.connection() as store:
        essential = put(store, "bike-3", "bike", [], consent="essential")
        none = kpis.device_kpis(store, essential, AT)
    assert all(k.status == kpis.NOT_COMPUTED for k in none.kpis)


def test_mirror_streaks_and_time_of_day(db: AnyDatabase) -> None:
    # sessions at 07:00 on five days in a row, a day off, then the last two days
    days = [10, 9, 8, 7, 6, 2, 1]
    samples = [s for d in sorted(days, reverse=True)
               for s in session(AT - d * DAY_MS + 7 * HOUR, 20, 10, session_active=True,
                                reps=30)]
    with db.connection() as store:
        row = put(store, "mirror-2", "mirror", samples, consent="personal")
        got = kpis.device_kpis(store, row, AT)
    assert value(got, "current_streak_days").value == 2
    assert value(got, "longest_streak_days").value == 5
    assert value(got, "time_of_day").value == "07:00 UTC (morning)"
    assert value(got, "reps_per_session").value == 30.0


def flights(unit: int, cycles: int) -> list[tuple[int, dict[str, Any]]]:
    rows = load_trajectories()[unit][:cycles]
    first = AT - cycles * 6 * HOUR
    return [(first + i * 6 * HOUR, dict(zip(NAMES, r, strict=True))) for i, r in enumerate(rows)]


def test_engine_kpis_from_the_shipped_model(db: AnyDatabase) -> None:
    unit = FLEET_UNITS[2]  # never seen by the shipped model
    life = len(load_trajectories()[unit])
    flown = life - 30
    with db.connection() as store:
        row = put(store, "engine-1", "engine", flights(unit, flown))
        late = kpis.device_kpis(store, row, AT)
        early = kpis.device_kpis(store, row, AT - (flown - 60) * 6 * HOUR)  # after 60 flights
    rul = value(late, "predicted_remaining_cycles").value
    assert isinstance(rul, float) and abs(rul - 30) <= 25
    assert value(late, "maintenance_alert").value == "maintenance due"
    assert value(early, "maintenance_alert").value == "none"
    margin_late = value(late, "egt_margin_degr").value
    margin_early = value(early, "egt_margin_degr").value
    assert isinstance(margin_late, float) and isinstance(margin_early, float)
    assert margin_late < margin_early  # the exhaust runs hotter as the engine wears
    assert value(late, "flights_per_week").value == 28.0
    vib = value(late, "vibration_trend")
    assert vib.status == kpis.NO_DATA and "no vibration sensor" in vib.reason


@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=60, unique=True))
def test_activities_split_at_every_long_pause(minutes: list[int]) -> None:
    starts = sorted(m * BUCKET_MS for m in minutes)
    buckets = [Bucket(t, 1, 1.0, 1.0, 1.0) for t in starts]
    acts = activity.activities(buckets)
    long_pauses = sum(1 for a, b in zip(starts, starts[1:], strict=False)
                      if b - (a + BUCKET_MS) > GAP_MS)
    assert len(acts) == long_pauses + 1
    assert sum(a.minutes for a in acts) == len(starts)
    assert all(a.start_ms < a.end_ms for a in acts)


@pytest.mark.parametrize("product", ["bike", "mirror"])
def test_activities_are_the_simulators_rides_and_sessions(db: AnyDatabase, product: str) -> None:
    """What the cloud calls a ride is what the simulated rider did: same count, same starts,
    same lengths (the truth file's ride and session events)."""
    from fleetloop.bench_churn import SETTINGS
    from fleetloop.fleet.behaviour import build, drive
    from fleetloop.fleet.truth import Truth

    start, end = AT - 4 * WEEK_MS, AT
    truth = Truth(5, start, end, 1.0)
    settings = {**SETTINGS, "interval_ms": 10_000}
    device = f"{product}-9"
    samples = list(drive(build(device, product, 5, start, end, truth), start, end, settings))
    with db.connection() as store:
        put(store, device, product, samples)
        acts = activity.read(store, device, kpis.ACTIVITY_METRIC[product], start, end)
    kind = "ride" if product == "bike" else "session"
    done = [e for e in truth.events(kind, device) if e["samples"]]
    assert len(done) >= 4
    assert len(acts) == len(done)
    for a, e in zip(acts, done, strict=True):
        assert abs(a.start_ms - e["t"]) <= MINUTE_MS  # the first sample's minute
        # to the minute: an activity's first and last minutes count whole
        assert -1 <= a.minutes - e["minutes"] <= 2
