"""Telemetry stored in chunks (cloud.telemetry_db): whatever runs of records go in (duplicates,
runs longer than a chunk holds or spanning more seqs than a chunk may, resent records,
interleaved batches), every read gives what one row per record would have given. A model of
the stored records (a dict by identity) is the reference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.db import AnyDatabase, Database, open_database
from cloud.store import Bucket, DeviceRow, TelemetryValues
from cloud.telemetry_db import CHUNK_RECORDS, SPAN

DEVICES = ("bike-1", "bike-2")


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AnyDatabase]:
    target = tmp_path / "cloud.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    database = open_database(target)
    database.open()
    with database.connection() as store, store.transaction():
        for device in DEVICES:
            store.insert_device(DeviceRow(id=device, product=None, created_ms=0))
    try:
        yield database
    finally:
        database.close()


def _values(device: str, incarnation: int, seqs: list[int], batch: int,
            consent_every: int = 0) -> list[TelemetryValues]:
    out: list[TelemetryValues] = []
    for seq in seqs:
        if consent_every and seq % consent_every == 0:
            out.append((device, incarnation, seq, 1000 + seq, {}, "gw-1", batch,
                        {"tier": "usage"}))
        else:
            out.append((device, incarnation, seq, 1000 + seq, {"power": seq % 97, "on": seq % 2 == 0},
                        "gw-1", batch, None))
    return out


def test_a_long_run_is_cut_into_chunks_and_read_back_whole(db: AnyDatabase) -> None:
    # 1,200 records over 9,000 seqs: more than a chunk holds, wider than a chunk may span
    seqs = sorted({1 + (n * 7919) % 9000 for n in range(1200)})
    with db.connection() as store, store.transaction():
        assert store.insert_telemetry_values(_values("bike-1", 5, seqs, 1, consent_every=50)) \
            == len(seqs)
        # the same records again, and a few new ones among them: only the new ones count
        again = _values("bike-1", 5, [*seqs[:300], 9001, 9002], 2)
        assert store.insert_telemetry_values(again) == 2
    with db.connection() as store:
        assert store.counts()["telemetry"] == len(seqs) + 2
        paged, after = [], 0
        while page := store.telemetry("bike-1", 5, after, 97):
            paged += [r.seq for r in page]
            after = page[-1].seq
        assert paged == [*seqs, 9001, 9002]
        low, high = seqs[100], seqs[700]
        assert [r.seq for r in store.telemetry_between("bike-1", 5, low, high)] == seqs[100:701]
        metric = store.metric_rows("bike-1")
        assert sorted(r.seq for r in metric) == [s for s in [*seqs, 9001, 9002] if s % 50]
        assert all(r.consent is None for r in metric)
        assert store.telemetry("bike-2", 5, 0, 10) == [] and store.telemetry("bike-1", 4, 0, 10) == []
        assert store.has_records_after("bike-1", 1000 + 9001)
        assert not store.has_records_after("bike-1", 1000 + 9002)


def test_metrics_rewritten_in_place_keep_everything_else(db: AnyDatabase) -> None:
    with db.connection() as store, store.transaction():
        store.insert_telemetry_values(_values("bike-1", 5, list(range(1, 1101)), 1))
        store.set_metrics("bike-1", [(5, 3, {"power": 1}), (5, 1000, {}), (4, 3, {"x": 1})])
    with db.connection() as store:
        rows = {r.seq: r for r in store.telemetry_between("bike-1", 5, 1, 1100)}
        assert rows[3].m == {"power": 1} and rows[1000].m == {}
        assert rows[4].m == {"power": 4, "on": True} and len(rows) == 1100
        assert (rows[3].t, rows[3].gateway, rows[3].batch_seq) == (1003, "gw-1", 1)


def test_buckets_over_chunks_match_the_records(db: AnyDatabase) -> None:
    with db.connection() as store, store.transaction():
        store.insert_telemetry_values(_values("bike-1", 5, list(range(1, 2001)), 1))
    with db.connection() as store:
        buckets = store.metric_buckets("bike-1", "power", 1500, 2500, 250)
        expected = []
        for start in range(1500, 2500, 250):
            values = [float(s % 97) for s in range(1, 2001) if start <= 1000 + s < start + 250]
            expected.append(Bucket(start, len(values), min(values), max(values),
                                   sum(values) / len(values)))
        assert buckets == expected
        on = store.metric_buckets("bike-1", "on", 1001, 1005, 10)
        assert on == [Bucket(1001, 4, 0.0, 1.0, 0.5)]


def test_a_devices_records_as_parsed_are_stored_as_rows_would_be(db: AnyDatabase) -> None:
    records: list[dict[str, Any]] = [
        {"v": 2, "d": "bike-1", "i": 7, "s": 3, "t": 13, "m": {"power": 3}, "h": "x"},
        {"v": 2, "d": "bike-1", "i": 7, "s": 1, "t": 11, "m": {"power": 1}, "h": "x"},
        {"v": 2, "d": "bike-1", "i": 7, "s": 2, "t": 12, "c": {"tier": "usage"}, "h": "x"},
        {"v": 2, "d": "bike-1", "i": 9, "s": 1, "t": 21, "m": {"power": 9}, "h": "x"},
        {"v": 2, "d": "bike-1", "i": 7, "s": 1, "t": 99, "m": {"power": 0}, "h": "x"},  # again
        {"v": 1, "d": "bike-1", "s": 5, "t": 15, "m": {}},  # version 1: incarnation 0
    ]
    with db.connection() as store, store.transaction():
        assert store.insert_records("bike-1", "gw-1", 4, records) == 5
        assert store.insert_records("bike-1", "gw-1", 5, records[:2]) == 0
        assert store.insert_records("bike-1", "gw-1", 5, []) == 0
    with db.connection() as store:
        rows = store.telemetry("bike-1", 7, 0, 10)
        assert [(r.seq, r.t, r.m, r.consent, r.batch_seq) for r in rows] == [
            (1, 11, {"power": 1}, None, 4), (2, 12, {}, {"tier": "usage"}, 4),
            (3, 13, {"power": 3}, None, 4)]
        assert [(r.seq, r.m) for r in store.telemetry("bike-1", 9, 0, 10)] == [(1, {"power": 9})]
        assert [(r.seq, r.m) for r in store.telemetry("bike-1", 0, 0, 10)] == [(5, {})]


# The model-based property: runs of records in any shape, SQLite (PostgreSQL runs the same
# SQL; the fixed tests above run on both).

_run = st.tuples(
    st.sampled_from(DEVICES),
    st.integers(1, 2),  # incarnation
    st.integers(1, 3 * SPAN),  # first seq
    st.integers(1, CHUNK_RECORDS + 200),  # records
    st.integers(1, 40),  # stride between seqs
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(_run, min_size=1, max_size=6), probes=st.lists(
    st.tuples(st.integers(0, 4 * SPAN), st.integers(1, 700)), min_size=1, max_size=4))
def test_chunks_read_as_one_row_per_record_would(
    tmp_path_factory: pytest.TempPathFactory, runs: list[tuple[str, int, int, int, int]],
    probes: list[tuple[int, int]],
) -> None:
    database = Database(tmp_path_factory.mktemp("chunks") / "cloud.db")
    database.open()
    model: dict[tuple[str, int, int], tuple[int, dict[str, Any], int]] = {}
    with database.connection() as store, store.transaction():
        for device in DEVICES:
            store.insert_device(DeviceRow(id=device, product=None, created_ms=0))
        for batch, (device, incarnation, first, count, stride) in enumerate(runs, 1):
            seqs = [first + n * stride for n in range(count)]
            values = _values(device, incarnation, seqs, batch)
            new = {s for s in seqs if (device, incarnation, s) not in model}
            assert store.insert_telemetry_values(values) == len(new)
            for v in values:
                model.setdefault((v[0], v[1], v[2]), (v[3], v[4], batch))
    with database.connection() as store:
        assert store.counts()["telemetry"] == len(model)
        for device in DEVICES:
            for incarnation in (1, 2):
                mine = sorted(s for (d, i, s) in model if (d, i) == (device, incarnation))
                for after, limit in probes:
                    got = store.telemetry(device, incarnation, after, limit)
                    assert [r.seq for r in got] == [s for s in mine if s > after][:limit]
                    for r in got:
                        assert (r.t, r.m, r.batch_seq) == model[(device, incarnation, r.seq)]
                    between = store.telemetry_between(device, incarnation, after, after + limit)
                    assert [r.seq for r in between] == [s for s in mine
                                                        if after <= s <= after + limit]
            t_from, t_to = 1000 + probes[0][0], 1000 + probes[0][0] + 50 * probes[0][1]
            points = [float(m["power"]) for (d, _, _), (t, m, _) in model.items()
                      if d == device and t_from <= t < t_to]
            buckets = store.metric_buckets(device, "power", t_from, t_to, t_to - t_from)
            assert sum(b.count for b in buckets) == len(points)
            if points:
                assert (buckets[0].min, buckets[0].max) == (min(points), max(points))
    database.close()


def test_the_identity_lookup_reads_one_range_of_the_end_index(tmp_path: Path) -> None:
    import sqlite3

    from cloud.telemetry_db import _HOLDING

    database = Database(tmp_path / "cloud.db")
    database.open()
    conn = sqlite3.connect(database.path)
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT seq_lo, body FROM telemetry_chunks"
        f" WHERE device = ? AND incarnation = ? AND {_HOLDING}", ("bike-1", 1, 5, 10, 6)))
    conn.close()
    database.close()
    assert "telemetry_chunks_end" in plan and "seq_hi>? AND seq_hi<?" in plan.replace("=", "")
