"""Dedupe by (device, seq) and the contiguous ack, in memory (SeqTracker) and through SQLite."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.seqs import SeqTracker
from gateway.store import (
    SCHEMA_VERSION,
    DeviceVitals,
    InboxRecord,
    InboxState,
    Store,
    Stream,
    TrackerChange,
)
from protocol import record as record_codec


def _contiguous(seqs: set[int]) -> int:
    n = 0
    while n + 1 in seqs:
        n += 1
    return n


arrivals = st.lists(st.integers(min_value=1, max_value=40), max_size=120)


@given(arrivals)
def test_tracker_stores_each_seq_once_and_acks_the_contiguous_prefix(seqs: list[int]) -> None:
    tracker = SeqTracker()
    stored = [s for s in seqs if tracker.accept(s)]
    assert sorted(stored) == sorted(set(seqs))
    assert tracker.acked == _contiguous(set(seqs))
    assert tracker.ahead == {s for s in set(seqs) if s > tracker.acked}


def _commit(store: Store, trackers: dict[Stream, SeqTracker], device: str,
            seqs: list[int]) -> int:
    """What ingest does for one group (version 1 records: incarnation 0): returns how many
    were new."""
    before = trackers.get((device, 0), SeqTracker())
    after = before.copy()
    rows = []
    for s in seqs:
        if after.accept(s):
            payload = record_codec.encode_v1(device, s, 1000 + s, {"x": s})
            rows.append(InboxRecord(device, s, payload, 0))
    store.commit_ingest(rows, [], [TrackerChange((device, 0), before, after, len(rows), 0)])
    trackers[(device, 0)] = after
    return len(rows)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["bike-1", "bike-2"]), arrivals), max_size=6))
def test_store_dedupes_any_order_and_survives_reopen(groups: list[tuple[str, list[int]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.db"
        store = Store(path)
        store.open()
        trackers: dict[Stream, SeqTracker] = {}
        seen: dict[str, set[int]] = {}
        for i, (device, seqs) in enumerate(groups):
            _commit(store, trackers, device, seqs)
            seen.setdefault(device, set()).update(seqs)
            if i % 2:  # a restart between groups: the registry comes back from disk
                store.close()
                store = Store(path)
                store.open()
                trackers = store.load_trackers()
        for device, seqs in seen.items():
            assert sorted(store.inbox_seqs(device)) == sorted(seqs)
            assert len(store.inbox_seqs(device)) == len(seqs)
            assert store.acked(device) == _contiguous(seqs)
            assert store.load_trackers()[(device, 0)].ahead == {
                s for s in seqs if s > _contiguous(seqs)}
        store.close()


def test_duplicates_are_not_stored_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    store.open()
    trackers: dict[Stream, SeqTracker] = {}
    assert _commit(store, trackers, "bike-1", [1, 2, 3]) == 3
    assert _commit(store, trackers, "bike-1", [3, 2, 1, 5]) == 1
    assert store.acked("bike-1") == 3
    assert _commit(store, trackers, "bike-1", [4]) == 1
    assert store.acked("bike-1") == 5
    assert store.inbox_seqs("bike-1") == [1, 2, 3, 5, 4]
    store.close()


def test_states_and_stats(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    store.open()
    state = json.dumps({"v": 1, "d": "bike-1", "t": 5}).encode()
    store.commit_ingest([], [InboxState("bike-1", state, 0)], [])
    st_ = store.stats()
    assert (st_.inbox, st_.states, st_.spool_batches, st_.head.seq) == (0, 1, 0, 0)
    store.close()


def test_database_is_wal_with_full_sync(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    store.open()
    with store.transaction() as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_a_device_floor_releases_a_gap_the_device_can_never_fill() -> None:
    from gateway.seqs import SeqTracker

    t = SeqTracker()
    for s in (1, 2, 5, 6):
        t.accept(s)
    assert t.acked == 2
    # seqs 3 and 4 were dropped from the device's full buffer: its floor is 5.
    t.claim_floor(5)
    assert t.acked == 6 and t.ahead == set() and t.skipped == 2
    t.claim_floor(3)
    assert t.acked == 6 and t.skipped == 2
    assert not t.accept(4)  # a late copy of a given-up seq is a duplicate, not stored twice


def test_a_floor_takes_effect_only_up_to_what_the_device_has_sent() -> None:
    """After a reconnect the state (with its floor) arrives before the records above the gap;
    a floor far beyond anything sent skips nothing, and costs nothing to apply."""
    from gateway.seqs import SeqTracker

    t = SeqTracker()
    t.accept(1)
    t.claim_floor(300_000_000)  # a lie, or records still on their way: nothing skipped yet
    assert (t.acked, t.skipped) == (1, 0)
    t.accept(2)
    assert (t.acked, t.skipped) == (2, 0)
    t.accept(300_000_005)  # seqs up to the floor exist: the gap below it is given up now
    assert t.acked == 299_999_999 and t.ahead == {300_000_005}
    assert t.skipped == 299_999_999 - 2
    assert t.accept(300_000_000) and t.acked == 300_000_000


def test_a_claimed_floor_survives_a_restart(tmp_path: Path) -> None:
    from gateway.seqs import SeqTracker

    store = Store(tmp_path / "g.db")
    store.open()
    before = SeqTracker()
    after = before.copy()
    after.accept(1)
    after.claim_floor(10)
    store.commit_ingest([], [], [TrackerChange(("bike-1", 7), before, after, 1, 0)])
    store.close()
    store.open()
    restored = store.load_trackers()[("bike-1", 7)]
    assert (restored.acked, restored.floor) == (1, 10)
    restored.accept(12)  # the records above the gap arrive after the restart
    assert restored.acked == 9 and restored.ahead == {12}


def _vitals(device: str, received_ms: int, **values: object) -> DeviceVitals:
    state = {"v": 2, "d": device, "i": 3, "t": received_ms - 1, **values}
    return DeviceVitals.from_state(state, received_ms)


def test_each_device_keeps_only_its_latest_vitals(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    store.open()
    store.commit_ingest([], [], [], [_vitals("bike-1", 10, consent="usage", heap_low=7000)])
    store.commit_ingest([], [], [], [_vitals("bike-1", 20, consent="personal", uptime_s=5),
                                     _vitals("mirror-1", 20, reason="bad", reconnects=4)])
    got = {v.device: v for v in store.latest_vitals()}
    assert store.stats().devices_with_vitals == 2 and len(got) == 2
    bike = got["bike-1"]
    assert (bike.incarnation, bike.t, bike.received_ms) == (3, 19, 20)
    assert bike.values["consent"] == "personal" and bike.values["uptime_s"] == 5
    assert bike.values["heap_low"] is None  # from the latest state only, not merged
    assert got["mirror-1"].to_obj()["reconnects"] == 4
    assert [v.device for v in store.latest_vitals(1)] == ["bike-1"]
    store.close()


def test_a_version_3_database_gets_the_vitals_table_and_keeps_its_registry(
        tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    store = Store(path)
    store.open()
    _commit(store, {}, "bike-1", [1, 2, 4])
    store.close()
    with sqlite3.connect(path) as db:  # what schema version 3 left
        db.execute("DROP TABLE device_vitals")
        db.execute("PRAGMA user_version = 3")
    store = Store(path)
    store.open()
    assert store.acked("bike-1") == 2 and store.inbox_seqs("bike-1") == [1, 2, 4]
    assert store.latest_vitals() == []
    store.commit_ingest([], [], [], [_vitals("bike-1", 1, consent="essential")])
    assert store.latest_vitals()[0].values["consent"] == "essential"
    with store.transaction() as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    store.close()
