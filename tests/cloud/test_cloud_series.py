"""Series: buckets computed in SQL against hand-computed answers, the vitals buckets, the
series API (roles, bounds, unknown metrics), and the SVG renderer."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from cloudkit import ADMIN, T0, GatewaySim, enrol, rec, record_key, signed, signed_state
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud import charts
from cloud.db import AnyDatabase, open_database
from cloud.errors import InvalidRequest
from cloud.services import series
from cloud.store import Bucket, DeviceRow, TelemetryRow
from protocol import consent as consent_tiers
from protocol import metrics as units

# power values at t = T0 + offset: buckets of 10 s from T0
VALUES = {0: 10, 3_000: 20, 9_999: 60,  # bucket 0: min 10, max 60, mean 30
          10_000: 5,  # bucket 1: a single value
          # bucket 2 empty
          30_000: 1, 39_999: 3,  # bucket 3: mean 2
          40_000: 1000}  # at to_ms: outside [from, to)


def _store_with(tmp_path: Path, values: dict[int, object], target: str | None = None) -> AnyDatabase:
    """A store (SQLite under tmp_path, or the PostgreSQL database `target` names) with bike-1's
    power at T0 + each offset, another device's and an earlier record."""
    db = open_database(target or tmp_path / "cloud.db")
    with db.connection() as store, store.transaction():
        store.insert_device(DeviceRow(id="bike-1", product="bike", created_ms=0))
        store.insert_device(DeviceRow(id="bike-2", product="bike", created_ms=0))
        rows = [TelemetryRow("bike-1", seq, T0 + off, {"power": v, "cadence": 80}, "gw-1", 1)
                for seq, (off, v) in enumerate(sorted(values.items()), 1)]
        rows.append(TelemetryRow("bike-2", 1, T0 + 1, {"power": 999}, "gw-1", 1))  # other device
        rows.append(TelemetryRow("bike-1", 99, T0 - 1, {"power": 999}, "gw-1", 1))  # before from
        store.insert_telemetry(rows)
    return db


def test_buckets_min_max_mean_per_bucket_with_empty_buckets_and_range_edges(
    tmp_path: Path, db_target: str | None
) -> None:
    db = _store_with(tmp_path, VALUES, db_target)
    with db.connection() as store:
        got = store.metric_buckets("bike-1", "power", T0, T0 + 40_000, 10_000)
    assert got == [
        Bucket(T0, 3, 10.0, 60.0, 30.0),
        Bucket(T0 + 10_000, 1, 5.0, 5.0, 5.0),
        Bucket(T0 + 30_000, 2, 1.0, 3.0, 2.0),
    ]


def test_buckets_skip_non_numbers_count_booleans_and_ignore_other_metrics(
    tmp_path: Path, db_target: str | None
) -> None:
    db = _store_with(tmp_path, {0: True, 1: False, 2: 4, 3: "text", 4: None}, db_target)
    with db.connection() as store:
        assert store.metric_buckets("bike-1", "power", T0, T0 + 10, 10) == [
            Bucket(T0, 3, 0.0, 4.0, 5 / 3)]
        assert store.metric_buckets("bike-1", "heart_rate", T0, T0 + 10, 10) == []
        assert store.metric_buckets("nobody", "power", T0, T0 + 10, 10) == []


def test_the_range_query_uses_the_time_index(tmp_path: Path) -> None:
    db = _store_with(tmp_path, VALUES)
    conn = sqlite3.connect(db.path)
    where = " FROM telemetry_chunks WHERE device = 'bike-1' AND t_hi >= 1 AND t_lo < 2"
    plan = " ".join(str(r) for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT body{where}"))
    # the index alone says which chunks reach into the range: no row is read to decide it
    alone = " ".join(str(r) for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT rowid{where}"))
    conn.close()
    assert "telemetry_chunks_time" in plan
    assert "COVERING INDEX telemetry_chunks_time" in alone


def test_window_bounds_and_bucket_width() -> None:
    assert series.Window(0, 10_000, 3).bucket_ms == 3334  # covers the range in 3 buckets
    assert series.Window(0, 1000, 1000).bucket_ms == 1
    for bad in ((10, 10, 5), (20, 10, 5), (0, 999, 5), (0, series.MAX_RANGE_MS + 1, 5),
                (0, 10_000, 0), (0, 10_000, series.MAX_POINTS + 1), (-1, 10_000, 5)):
        with pytest.raises(InvalidRequest):
            series.Window(*bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 99_999), st.integers(-1000, 1000)), max_size=60),
       st.integers(1, 50))
def test_python_buckets_match_a_direct_computation(pairs: list[tuple[int, int]], points: int) -> None:
    window = series.Window(0, 100_000, points)
    got = series.bucketise(((t, float(v)) for t, v in pairs), window)
    assert sum(b.count for b in got) == len(pairs)
    for b in got:
        inside = [v for t, v in pairs if b.start_ms <= t < b.start_ms + window.bucket_ms]
        assert (b.count, b.min, b.max) == (len(inside), min(inside), max(inside))
        assert b.mean == pytest.approx(sum(inside) / len(inside))


def test_cohort_series_merges_devices(tmp_path: Path) -> None:
    db = _store_with(tmp_path, {0: 10, 5: 30})
    window = series.Window(T0, T0 + 10_000, 1)
    with db.connection() as store:
        merged = series.cohort_series(store, ["bike-1", "bike-2", "ghost"], "power", window)
    assert merged.unit == "W"
    assert merged.buckets == [Bucket(T0, 3, 10.0, 999.0, (10 + 30 + 999) / 3)]


def test_every_metric_with_a_consent_tier_has_a_unit_entry() -> None:
    for product, table in consent_tiers.METRIC_TIERS.items():
        assert set(table) == set(units.UNITS[product]), product
    assert units.unit("bike", "power") == "W" and units.unit("toaster", "power") == ""


# -- the API ----------------------------------------------------------------------------------

def _fill(client: TestClient, gateway: GatewaySim) -> None:
    key = record_key()
    enrol(client, "bike-1", key)
    records = [signed("bike-1", i + 1, key, t=T0 + i * 60_000, power=100 + i, cadence=80)
               for i in range(120)]
    states = [signed_state("bike-1", key, t=T0 + i * 600_000, heap_low=40_000 - i,
                           buffer_bytes=100 * i, reconnects=i // 3, why="heartbeat")
              for i in range(12)]
    assert gateway.push(records, states).status_code == 200


def test_series_api_downsamples_and_names_the_unit(client: TestClient, gateway: GatewaySim) -> None:
    _fill(client, gateway)
    r = client.get("/api/v1/devices/bike-1/series", headers=ADMIN, params={
        "metric": "power", "from_ms": T0, "to_ms": T0 + 120 * 60_000, "points": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["unit"], body["bucket_ms"], body["count"]) == ("W", 600_000, 120)
    assert len(body["buckets"]) == 12
    first = body["buckets"][0]
    assert (first["t"], first["count"], first["min"], first["max"], first["mean"]) == (
        T0, 10, 100, 109, 104.5)
    assert body["last"] == {"t": T0 + 119 * 60_000, "value": 219}
    # a metric it never sent: an empty series
    r = client.get("/api/v1/devices/bike-1/series", headers=ADMIN, params={
        "metric": "heart_rate", "from_ms": T0, "to_ms": T0 + 3_600_000})
    assert r.status_code == 200 and r.json()["buckets"] == [] and r.json()["last"] is None


def test_vitals_series_api(client: TestClient, gateway: GatewaySim) -> None:
    _fill(client, gateway)
    r = client.get("/api/v1/devices/bike-1/vitals/series", headers=ADMIN, params={
        "field": "heap_low", "from_ms": T0, "to_ms": T0 + 7_200_000, "points": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit"] == "B" and [b["count"] for b in body["buckets"]] == [6, 6]
    assert body["buckets"][0]["min"] == 40_000 - 5 and body["buckets"][1]["max"] == 40_000 - 6


@pytest.mark.parametrize("params, status", [
    ({"metric": "power", "from_ms": T0, "to_ms": T0}, 400),
    ({"metric": "power", "from_ms": T0, "to_ms": T0 + 10, "points": 5}, 400),
    ({"metric": "power", "from_ms": T0, "to_ms": T0 + 10**13}, 400),
    ({"metric": "power", "from_ms": T0, "to_ms": T0 + 10_000, "points": 0}, 422),
    ({"metric": "power", "from_ms": T0, "to_ms": T0 + 10_000, "points": 2001}, 422),
    ({"metric": "Power!", "from_ms": T0, "to_ms": T0 + 10_000}, 422),
    ({"metric": "power", "from_ms": -1, "to_ms": T0}, 422),
    ({"from_ms": T0, "to_ms": T0 + 10_000}, 422),
])
def test_series_api_refuses_bad_ranges(client: TestClient, gateway: GatewaySim,
                                       params: dict[str, object], status: int) -> None:
    _fill(client, gateway)
    r = client.get("/api/v1/devices/bike-1/series", headers=ADMIN, params=params)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_series_api_needs_a_role_and_a_known_device(client: TestClient, gateway: GatewaySim) -> None:
    gateway.push([rec("bike-1", 1)])
    params = {"metric": "power", "from_ms": T0, "to_ms": T0 + 10_000}
    assert client.get("/api/v1/devices/bike-1/series", params=params).status_code == 401
    gw = {"Authorization": f"Bearer {gateway.token}"}
    assert client.get("/api/v1/devices/bike-1/series", params=params, headers=gw).status_code == 403
    assert client.get("/api/v1/devices/nobody/series", params=params, headers=ADMIN).status_code == 404
    params = {"field": "rssi", "from_ms": T0, "to_ms": T0 + 10_000}
    assert client.get("/api/v1/devices/bike-1/vitals/series", params=params).status_code == 401


# -- the SVG renderer -------------------------------------------------------------------------

def _points(svg: str) -> list[tuple[float, float]]:
    out = []
    for attr in re.findall(r'<polyline class="mean" points="([^"]*)"', svg):
        out += [tuple(map(float, p.split(","))) for p in attr.split()]
    return out  # type: ignore[return-value]


def test_chart_draws_a_point_per_bucket_inside_the_plot_area() -> None:
    buckets = [Bucket(T0 + i * 60_000, 1, i - 1.0, i + 1.0, float(i)) for i in range(50)]
    svg = charts.chart(buckets, T0, T0 + 50 * 60_000, 60_000, title="power", unit="W")
    pts = _points(svg)
    assert len(pts) == 50
    f = charts.FRAME
    assert all(f.left <= x <= f.left + f.plot_width for x, _ in pts)
    assert all(f.top <= y <= f.top + f.plot_height for _, y in pts)
    assert pts[0][1] > pts[-1][1]  # rising values: the line goes up the screen
    assert '<polygon class="band"' in svg
    assert "power (W)" in svg and ">W</text>" in svg  # title and axis unit
    values = re.findall(r'class="value-label"[^>]*>([^<]*)<', svg)
    assert values == ["-20", "0", "20", "40", "60"]  # round ticks covering -1..50
    times = re.findall(r'class="time-label"[^>]*>([^<]*)<', svg)
    assert times and all(re.fullmatch(r"\d\d:\d\d", t) for t in times)


def test_chart_breaks_the_line_at_empty_buckets_and_says_when_empty() -> None:
    buckets = [Bucket(0, 1, 1, 1, 1), Bucket(1000, 1, 2, 2, 2), Bucket(2000, 1, 2, 2, 2),
               Bucket(6000, 1, 3, 3, 3)]
    svg = charts.chart(buckets, 0, 10_000, 1000, title="x")
    assert svg.count('<polyline class="mean"') == 1 and svg.count('class="mean-dot"') == 1
    empty = charts.chart([], 0, 10_000, 1000, title="x")
    assert "no data in this range" in empty and "<polyline" not in empty


def test_chart_escapes_its_texts() -> None:
    svg = charts.chart([Bucket(0, 1, 1, 1, 1)], 0, 1000, 1000, title="<b>", unit="&")
    assert "<b>" not in svg and "&lt;b&gt; (&amp;)" in svg


def test_time_ticks_fit_every_span() -> None:
    for span in (1000, 60_000, 3_600_000, 86_400_000, 7 * 86_400_000, 400 * 86_400_000):
        step, ticks = charts.time_ticks(T0, T0 + span)
        assert 1 <= len(ticks) <= charts.MAX_TIME_TICKS + 1
        assert all(t % step == 0 and T0 <= t <= T0 + span for t in ticks)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e12, 1e12), st.floats(0, 1e12))
def test_value_ticks_cover_any_range(low: float, span: float) -> None:
    ticks = charts.nice_ticks(low, low + span)
    assert 2 <= len(ticks) <= 12
    step = ticks[1] - ticks[0]
    slack = step * 1e-6  # float noise at the edges
    assert ticks[0] <= low + slack and ticks[-1] >= low + span - slack
    assert all(abs((b - a) - step) <= slack for a, b in zip(ticks, ticks[1:], strict=False))
