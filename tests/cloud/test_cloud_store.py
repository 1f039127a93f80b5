"""The store on its own, on SQLite and on PostgreSQL: the guarantees the services rely on
(store.Store docstring), and databases of every older version upgraded to the current one."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cloud.db import SCHEMA_VERSION, AnyDatabase, Database, DatabaseError, open_database
from cloud.schema import MIGRATIONS, v1_statements
from cloud.store import BatchRow, DeviceRow, GatewayRow, QuarantineRow, TelemetryRow


@pytest.fixture
def target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | Path:
    """Where the backend's database lives: an SQLite path, or a fresh PostgreSQL database
    (empty: the tests build old versions in it)."""
    if backend == "sqlite":
        return tmp_path / "sub" / "cloud.db"
    databases = request.getfixturevalue("pg_databases")
    url = databases.create(migrated=False)
    request.addfinalizer(lambda: databases.drop(url))
    return str(url)


@pytest.fixture
def db(target: str | Path) -> Iterator[AnyDatabase]:
    database = open_database(target)
    database.open()
    try:
        yield database
    finally:
        database.close()


class Raw:
    """A database written the way an older cloud wrote it: its own DDL (translated for
    PostgreSQL as cloud.pg does) and `?` statements; `version` sets the schema version."""

    def __init__(self, target: str | Path) -> None:
        self.target = target
        if isinstance(target, Path):
            target.parent.mkdir(parents=True, exist_ok=True)
            self._sqlite: sqlite3.Connection | None = sqlite3.connect(target)
        else:
            import psycopg

            from cloud.pg import Adapter

            self._sqlite = None
            self._pg = psycopg.connect(target, autocommit=True)
            self._adapter = Adapter(self._pg)

    def ddl(self, statements: Sequence[str]) -> None:
        from cloud.pg import to_postgres

        for statement in statements:
            if self._sqlite is not None:
                self._sqlite.execute(statement)
            elif (translated := to_postgres(statement)) is not None:
                self._pg.execute(translated)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self._sqlite is not None:
            self._sqlite.execute(sql, params)
        else:
            self._adapter.execute(sql, params)

    def version(self, version: int) -> None:
        if self._sqlite is not None:
            self._sqlite.execute(f"PRAGMA user_version={version}")
        else:
            self._pg.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            self._pg.execute("DELETE FROM schema_version")
            self._pg.execute("INSERT INTO schema_version VALUES (%s)", (version,))

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.commit()
            self._sqlite.close()
        else:
            self._pg.close()


def schema_version(target: str | Path) -> int:
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    from cloud.pg import PgDatabase

    database = PgDatabase(target)
    try:
        return database.schema_version()
    finally:
        database.close()


def columns(target: str | Path, table: str) -> set[str]:
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        try:
            return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(target) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
        )
        return {r[0] for r in rows}


def test_open_creates_wal_database(tmp_path: Path) -> None:
    db = Database(tmp_path / "sub" / "cloud.db")
    db.open()
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


def test_insert_telemetry_counts_only_new_rows(db: AnyDatabase) -> None:
    with db.connection() as store, store.transaction():
        store.insert_device(DeviceRow(id="bike-1", product=None, created_ms=0))
        rows = [TelemetryRow("bike-1", s, s, {"p": s}, "gw-1", 1) for s in (1, 2, 2, 3)]
        assert store.insert_telemetry(rows) == 3
        assert store.insert_telemetry(rows) == 0
        assert store.insert_telemetry([]) == 0
    with db.connection() as store:
        assert [r.seq for r in store.telemetry("bike-1", 0, 1, 10)] == [2, 3]


def test_transaction_rolls_back_on_error(db: AnyDatabase) -> None:
    with db.connection() as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_gateway(GatewayRow("gw-1", b"k" * 32, 0, 0, "0" * 64), "hash")
            raise RuntimeError("boom")
        assert store.get_gateway("gw-1") is None
        with pytest.raises(RuntimeError, match="nest"), store.transaction(), store.transaction():
            pass


def test_configs_after_returns_latest_per_device(db: AnyDatabase) -> None:
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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_files_are_private(tmp_path: Path) -> None:
    database = Database(tmp_path / "home" / "cloud" / "cloud.db")
    database.open()
    with database.connection() as store, store.transaction():  # a write makes -wal and -shm
        store.insert_device(DeviceRow(id="bike-1", product=None, created_ms=0))
        wal, shm = (Path(f"{database.path}-wal"), Path(f"{database.path}-shm"))
        assert wal.exists() and shm.exists()
        assert (_mode(database.path), _mode(wal), _mode(shm)) == (0o600, 0o600, 0o600)
    assert _mode(database.path.parent) == 0o700


def test_files_of_an_older_cloud_are_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "cloud"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    path = folder / "cloud.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    Database(path).open()
    assert (_mode(path), _mode(folder)) == (0o600, 0o700)


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    database = Database(shared / "cloud.db")
    database.open()
    assert _mode(shared) == 0o1777 and _mode(database.path) == 0o600


def _version_1(target: str | Path) -> None:
    """A database as the version-1 cloud left it, with a gateway, a device, a record, a config."""
    raw = Raw(target)
    raw.ddl(v1_statements())
    raw.version(1)
    raw.execute("INSERT INTO gateways VALUES ('gw-1', ?, 'hash', 0, 1, ?, 5)", (b"k" * 32, "d" * 64))
    raw.execute("INSERT INTO batches VALUES ('gw-1', 1, ?, ?, 0, 5, 1, 1, 0)", ("d" * 64, "0" * 64))
    raw.execute("INSERT INTO devices VALUES ('bike-1', 'bike', 0, 'gw-1', 7, 1, 1, '{}', NULL)")
    raw.execute("INSERT INTO telemetry VALUES ('bike-1', 1, 7, '{\"p\":1}', 'gw-1', 1)")
    raw.execute("INSERT INTO configs (device, version, issued_ms, settings, envelope)"
                " VALUES ('bike-1', 1, 0, '{}', 'env')")
    raw.close()


def test_version_1_database_is_migrated(target: str | Path) -> None:
    _version_1(target)
    database = open_database(target)
    database.open()
    assert schema_version(target) == SCHEMA_VERSION
    assert {"quarantined", "gap_status", "gap_reason"} <= columns(target, "batches")
    with database.connection() as store:
        assert store.counts() == {"gateways": 1, "batches": 1, "devices": 1, "telemetry": 1,
                                  "configs": 1, "quarantine": 0}
        device = store.get_device("bike-1")
        assert device is not None and device.gateway == "gw-1"  # now its assigned gateway
        assert store.gap_counts() == {}
        with store.transaction():
            store.insert_quarantine([QuarantineRow("gw-1", 2, "record", "why", "{}", 9, "bike-1", 3)])
            store.append_batch(BatchRow("gw-1", 2, "e" * 64, "d" * 64, 0, 9, 1, 0, 0,
                                        gap_status=400, gap_reason="bad"))
            # the version 1 config's revision was assigned by its key: inserts continue above
            assert store.insert_config("bike-1", 2, 0, {}, "env2") == 2
        assert [(g.seq, g.gap_reason) for g in store.gaps("gw-1", 10)] == [(2, "bad")]
        assert store.quarantine_counts() == {"bike-1": 1}
    database.close()
    again = open_database(target)
    again.open()  # opening again changes nothing
    again.close()
    assert schema_version(target) == SCHEMA_VERSION


def _version_2(target: str | Path) -> None:
    """A database as the version-2 cloud (protocol v1) left it: two devices with records, a
    quarantined record, a reported state."""
    raw = Raw(target)
    raw.ddl(v1_statements())
    raw.ddl(MIGRATIONS[2])
    raw.version(2)
    raw.execute("INSERT INTO gateways VALUES ('gw-1', ?, 'hash', 0, 2, ?, 5)", (b"k" * 32, "d" * 64))
    raw.execute("INSERT INTO devices VALUES ('bike-1', 'bike', 3, 'gw-1', 9, 2, 2,"
                " '{\"p\":2}', '{\"v\":1,\"d\":\"bike-1\",\"t\":8}')")
    raw.execute("INSERT INTO devices VALUES ('bike-2', NULL, 4, 'gw-1', 7, 1, 1, '{}', NULL)")
    raw.execute("INSERT INTO devices VALUES ('bike-3', NULL, 4, NULL, NULL, 0, 0, '{}', NULL)")
    for device, seq, t in (("bike-1", 1, 7), ("bike-1", 2, 9), ("bike-2", 1, 7)):
        raw.execute("INSERT INTO telemetry VALUES (?, ?, ?, ?, 'gw-1', 1)",
                    (device, seq, t, f'{{"p":{seq}}}'))
    raw.execute("INSERT INTO quarantine (device, seq, gateway, batch_seq, kind, reason, body,"
                " received_ms) VALUES ('bike-3', 1, 'gw-1', 2, 'record', 'why', '{}', 5)")
    raw.close()


def test_version_2_database_is_migrated_to_record_identities(target: str | Path) -> None:
    _version_2(target)
    database = open_database(target)
    database.open()
    assert schema_version(target) == SCHEMA_VERSION
    if isinstance(target, Path):
        conn = sqlite3.connect(target)
        key = [r[1] for r in sorted(conn.execute("PRAGMA table_info(telemetry_chunks)"),
                                    key=lambda r: r[5]) if r[5]]
        conn.close()
        assert key == ["device", "incarnation", "seq_lo"]
    with database.connection() as store:
        assert store.counts() == {"gateways": 1, "batches": 0, "devices": 3, "telemetry": 3,
                                  "configs": 0, "quarantine": 1}
        # every existing row is a version 1 record: incarnation 0
        assert [(r.incarnation, r.seq, r.m) for r in store.telemetry("bike-1", 0, 0, 10)] == [
            (0, 1, {"p": 1}), (0, 2, {"p": 2})]
        assert store.incarnations("bike-1") == [0] and store.incarnations("bike-3") == []
        bike = store.get_device("bike-1")
        assert bike is not None
        assert (bike.incarnation, bike.last_seq, bike.records, bike.conflicts) == (0, 2, 2, 0)
        assert bike.reported == {"v": 1, "d": "bike-1", "t": 8}
        assert store.record_key("bike-1") is None and store.record_key_devices() == set()
        with store.transaction():  # the new primary key: one seq, two incarnations
            rows = [TelemetryRow("bike-1", 1, 1, {}, "gw-1", 2, incarnation=5),
                    TelemetryRow("bike-1", 1, 1, {}, "gw-1", 2, incarnation=0)]
            assert store.insert_telemetry(rows) == 1
    database.close()
    again = open_database(target)
    again.open()  # opening again changes nothing
    again.close()


def _version_3(target: str | Path) -> None:
    """A database as the version-3 cloud (protocol v2, before consent) left it."""
    _version_2(target)
    raw = Raw(target)
    raw.ddl(MIGRATIONS[3])
    raw.version(3)
    raw.execute("INSERT INTO telemetry VALUES ('bike-1', 1234567, 1, 10, '{\"heart_rate\":90}',"
                " 'gw-1', 2)")
    raw.close()


def test_version_3_database_is_migrated_to_consent(target: str | Path) -> None:
    _version_3(target)
    database = open_database(target)
    database.open()
    assert schema_version(target) == SCHEMA_VERSION
    assert columns(target, "telemetry_chunks") and columns(target, "heartbeats")
    assert columns(target, "consent_audit")
    with database.connection() as store:
        # nothing stored before consent is touched: it was stored as sent, and stays so
        assert [r.m for r in store.telemetry("bike-1", 1234567, 0, 10)] == [{"heart_rate": 90}]
        assert all(r.consent is None for r in store.metric_rows("bike-1"))
        bike = store.get_device("bike-1")
        assert bike is not None and (bike.consent_tier, bike.consent_cap) == (None, None)
        assert store.consent_audit("bike-1", 10) == [] and store.heartbeats("bike-1", 10) == []
        with store.transaction():
            store.insert_telemetry([TelemetryRow("bike-1", 2, 11, {}, "gw-1", 3,
                                                 incarnation=1234567,
                                                 consent={"cfg": 0, "origin": "device",
                                                          "tier": "usage"})])
        consent_row = store.telemetry("bike-1", 1234567, 1, 10)[0]
        assert consent_row.consent == {"cfg": 0, "origin": "device", "tier": "usage"}
        # a consent record is no metric row: consent deletions never touch it
        assert {(r.incarnation, r.seq) for r in store.metric_rows("bike-1")} == {
            (0, 1), (0, 2), (1234567, 1)}
    database.close()
    again = open_database(target)
    again.open()  # opening again changes nothing
    again.close()


def test_a_migrated_database_serves_protocol_v2(target: str | Path, tmp_path: Path) -> None:
    from cloudkit import ADMIN, ADMIN_TOKEN, GatewaySim, enrol, rec, record_key, register, signed
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fastapi.testclient import TestClient

    from cloud.main import create_app
    from cloud.settings import Settings
    from protocol.batch import GENESIS

    _version_2(target)
    settings = Settings.load(home=tmp_path, db_path=target, admin_token=ADMIN_TOKEN, env={})
    with TestClient(create_app(settings)) as client:
        key = Ed25519PrivateKey.generate()
        gw = GatewaySim(client, "gw-2", key, register(client, "gw-2", key), prev=GENESIS)
        client.put("/api/v1/devices/bike-1/gateway", json={"gateway": "gw-2"}, headers=ADMIN)
        # an old record replayed with new content: a conflict, reported
        r = gw.push([rec("bike-1", 2, t=9, p=3)])
        assert r.json() == {"stored": 0, "duplicates": 0, "quarantined": 1, "seq": 1}
        assert gw.push([rec("bike-1", 2, t=9, p=2)]).json()["duplicates"] == 1
        device = client.get("/api/v1/devices/bike-1", headers=ADMIN).json()
        assert device["conflicts"] == 1
        # re-provisioned with a key: its tagged records go on in a new incarnation
        enrol(client, "bike-1", record_key())
        assert gw.push([signed("bike-1", 1, record_key())]).json()["stored"] == 1
        records = client.get("/api/v1/devices/bike-1/telemetry", headers=ADMIN).json()["records"]
        assert [(x["incarnation"], x["seq"]) for x in records] == [(0, 1), (0, 2), (1234567, 1)]


def test_a_version_1_database_serves_the_app(target: str | Path, tmp_path: Path) -> None:
    from cloudkit import ADMIN, ADMIN_TOKEN
    from fastapi.testclient import TestClient

    from cloud.main import create_app
    from cloud.settings import Settings

    _version_1(target)
    settings = Settings.load(home=tmp_path, db_path=target, admin_token=ADMIN_TOKEN, env={})
    with TestClient(create_app(settings)) as client:
        r = client.get("/api/v1/devices/bike-1", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert (r.json()["gateway"], r.json()["records"], r.json()["quarantined"]) == ("gw-1", 1, 0)
        assert client.get("/api/v1/gateways", headers=ADMIN).json()[0]["gaps"] == 0


def test_reannounce_gives_the_latest_config_the_next_revision(db: AnyDatabase) -> None:
    with db.connection() as store, store.transaction():
        store.insert_device(DeviceRow(id="a", product=None, created_ms=0))
        store.insert_device(DeviceRow(id="b", product=None, created_ms=0))
        store.insert_config("a", 1, 0, {}, "a1")
        store.insert_config("a", 2, 0, {}, "a2")
        store.insert_config("b", 1, 0, {}, "b1")
        assert store.reannounce_config("a") == 4
        assert store.reannounce_config("nobody") is None
        assert store.insert_config("b", 2, 0, {}, "b2") == 5  # inserts continue above it
    with db.connection() as store:
        assert [(c.envelope, c.revision) for c in store.configs_after(3, "gw-1")] == [
            ("a2", 4), ("b2", 5)]
        latest = store.latest_config("a")
        assert latest is not None and (latest.version, latest.revision) == (2, 4)


def test_a_policys_record_clock_is_its_arms_newest_record(db: AnyDatabase) -> None:
    from cloud.policy_store import PolicyDeviceRow, PolicyRow

    with db.connection() as store, store.transaction():
        for device, seen in (("b1", 500), ("b2", 900), ("b3", None), ("b4", 9999)):
            store.insert_device(DeviceRow(id=device, product="bike", created_ms=0,
                                          last_seen_ms=seen))
        policy = store.insert_policy(PolicyRow(0, "p", "bike", {}, 1, "running", "", 0, "ops",
                                               0, 1000, 0, 0))
        other = store.insert_policy(PolicyRow(0, "q", "bike", {}, 1, "running", "", 0, "ops",
                                              0, 1000, 0, 0))
        store.insert_policy_devices([
            PolicyDeviceRow(policy, "b1", "treatment", ""),
            PolicyDeviceRow(policy, "b2", "control", ""),
            PolicyDeviceRow(policy, "b4", "excluded", "needs consent"),  # never counts
            PolicyDeviceRow(other, "b3", "treatment", ""),
        ])
    with db.connection() as store:
        assert store.policy_record_clock(policy) == 900
        assert store.policy_record_clock(other) is None  # nothing heard from its devices
        assert store.policy_record_clock(12345) is None
        # per arm: (devices, heard from at or after the time); the excluded one never counts
        assert store.policy_heard(policy, 900) == {"treatment": (1, 0), "control": (1, 1)}
        assert store.policy_heard(policy, 400) == {"treatment": (1, 1), "control": (1, 1)}
        assert store.policy_heard(other, 0) == {"treatment": (1, 0)}  # never heard from
        assert store.policy_heard(12345, 0) == {}
    # a state past the time whose records are not all in does not count until they are
    with db.connection() as store, store.transaction():
        b2 = store.get_device("b2")
        assert b2 is not None
        store.save_device(replace(b2, last_seq=30, incarnation=7,
                                  reported={"t": 950, "i": 7, "seq": 40}, last_seen_ms=950))
    with db.connection() as store:
        assert store.policy_heard(policy, 900) == {"treatment": (1, 0), "control": (1, 0)}
    with db.connection() as store, store.transaction():
        b2 = store.get_device("b2")
        assert b2 is not None
        store.save_device(replace(b2, last_seq=40))
    with db.connection() as store:
        assert store.policy_heard(policy, 900) == {"treatment": (1, 0), "control": (1, 1)}


@pytest.mark.parametrize("seen, seq, incarnation, state, heard", [
    (950, 30, 7, None, True),  # records only: the newest is dated past the time
    (850, 30, 7, None, False),
    (950, 30, 7, {"t": 950, "i": 7, "seq": 40}, False),  # ten records made by then not in
    (950, 40, 7, {"t": 950, "i": 7, "seq": 40}, True),
    (950, 45, 7, {"t": 950, "i": 7, "seq": 40}, True),
    (950, 40, 6, {"t": 950, "i": 7, "seq": 40}, False),  # restarted: its new records not in
    (950, 0, 0, {"t": 950, "i": 7, "seq": 0}, True),  # it has made no record: none to wait for
    (990, 30, 7, {"t": 950, "i": 7, "seq": 40}, True),  # a record dated after the state is in
    (890, 40, 7, {"t": 890, "i": 7, "seq": 40}, False),  # caught up, but not past the time
])
def test_a_device_is_heard_past_a_time_when_its_records_of_then_are_in(
        seen: int, seq: int, incarnation: int, state: dict[str, int] | None,
        heard: bool) -> None:
    row = DeviceRow(id="b", product="bike", created_ms=0, last_seen_ms=seen, last_seq=seq,
                    incarnation=incarnation, reported=state)
    assert row.heard_past(900) is heard
