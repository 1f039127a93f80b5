"""The SQLite store on its own: the guarantees the services rely on (store.Store docstring)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloud.db import Database, DatabaseError
from cloud.store import DeviceRow, GatewayRow, TelemetryRow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "sub" / "cloud.db")
    database.open()
    return database


def test_open_creates_wal_database(db: Database) -> None:
    conn = sqlite3.connect(db.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(DatabaseError, match="schema version 99"):
        Database(path).open()


def test_insert_telemetry_counts_only_new_rows(db: Database) -> None:
    with db.connection() as store, store.transaction():
        store.insert_device(DeviceRow(id="bike-1", product=None, created_ms=0))
        rows = [TelemetryRow("bike-1", s, s, {"p": s}, "gw-1", 1) for s in (1, 2, 2, 3)]
        assert store.insert_telemetry(rows) == 3
        assert store.insert_telemetry(rows) == 0
        assert store.insert_telemetry([]) == 0
    with db.connection() as store:
        assert [r.seq for r in store.telemetry("bike-1", 1, 10)] == [2, 3]


def test_transaction_rolls_back_on_error(db: Database) -> None:
    with db.connection() as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_gateway(GatewayRow("gw-1", b"k" * 32, 0, 0, "0" * 64), "hash")
            raise RuntimeError("boom")
        assert store.get_gateway("gw-1") is None
        with pytest.raises(RuntimeError, match="nest"), store.transaction(), store.transaction():
            pass


def test_configs_after_returns_latest_per_device(db: Database) -> None:
    with db.connection() as store, store.transaction():
        for device in ("a", "b"):
            store.insert_device(DeviceRow(id=device, product=None, created_ms=0))
        revs = [
            store.insert_config("a", 1, 0, {}, "a1"),
            store.insert_config("b", 1, 0, {}, "b1"),
            store.insert_config("a", 2, 0, {}, "a2"),
        ]
    assert revs == [1, 2, 3]
    with db.connection() as store:
        assert [c.envelope for c in store.configs_after(0, "gw-1")] == ["b1", "a2"]
        assert [c.envelope for c in store.configs_after(2, "gw-1")] == ["a2"]
        assert store.configs_after(3, "gw-1") == []
        assert store.max_config_revision() == 3
        assert store.desired_versions() == {"a": 2, "b": 1}
