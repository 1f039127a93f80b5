"""The gateway's SQLite database: everything that must survive a kill -9.

Tables
    inbox    accepted telemetry records waiting to be batched (raw payload bytes)
    states   accepted device states waiting to be batched
    streams  per (device, incarnation): acked = highest contiguous seq stored (the seq
             registry) and the floor it last claimed (gateway.seqs)
    ahead_seqs  (device, incarnation, seq) stored above a gap in that stream's seqs
    spool    sealed batches waiting for the cloud's 2xx (seq, digest, body, signature); kind
             'gap' stands in the chain for a dead-lettered batch (protocol.batch.Gap)
    dead_letters  batches the cloud refused for a batch-level reason, kept whole with the
             cloud's answer for a technician (`diag`), never retried by themselves
    chain    the head of the batch chain: last sealed batch seq + digest
    cursors  named integers (the downlink's config revision; the spool's bytes, kept in the
             transaction of every spool change; what the spool budget dropped; the quarantine's
             total)
    device_vitals  per device, the vitals of the latest state it sent that passed the protocol's
             checks (one small row per device, replaced by every newer state; for `diag`)
    update_offers  per device, the update offer the broker holds retained for it (gateway.updates:
             what to clear when the cloud withdraws it, what not to publish again)
    update_bundles  per bundle key, how often its bytes came from the cloud (gateway.ota_cache;
             kept after the bundle leaves the cache, so a download again shows)
    quarantine  device messages refused at ingest, bounded (gateway.quarantine): who, which
             topic, why, how large, when, and the first 64 bytes

Files are created 0600 in a 0700 directory: telemetry is personal data.

WAL + synchronous=FULL: a commit is on disk when it returns, so an MQTT PUBACK or a device ack
sent after it never covers data a power cut could lose. Each thread gets its own connection;
writers take the lock with BEGIN IMMEDIATE and keep transactions short. The hot path is plain
executemany (sqlite-utils measured 2.4-4x slower for batched inserts).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import StoreError
from gateway.seqs import SeqTracker
from protocol.batch import GENESIS

SCHEMA_VERSION = 5
KIND_BATCH = "batch"
KIND_GAP = "gap"
KIND_DROP = "drop"  # batches dropped unsent by the spool budget (protocol.batch.GAP_DROPPED)

# Named integers in `cursors` kept by the spool budget and the quarantine.
DROPPED_BATCHES = "spool_dropped_batches"
DROPPED_RECORDS = "spool_dropped_records"
QUARANTINE_TOTAL = "quarantine_total"
SPOOL_BYTES = "spool_bytes"  # bytes of the sealed bodies in the spool, kept with every change

# The state fields (protocol.state) kept per device in device_vitals, in its column order;
# NULL where the latest state did not carry one (older firmware sends fewer).
VITALS = ("heap_free", "heap_low", "uptime_s", "buffered", "buffer_bytes", "dropped",
          "reconnects", "config_version", "resets", "link_failures", "hint_ms", "rssi",
          "consent", "why", "config_status", "reason", "reset_cause", "link_error", "fw",
          "profile")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS states (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    device TEXT NOT NULL,
    incarnation INTEGER NOT NULL,
    acked INTEGER NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    last_seen_ms INTEGER NOT NULL DEFAULT 0,
    floor INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, incarnation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ahead_seqs (
    device TEXT NOT NULL,
    incarnation INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (device, incarnation, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    body BLOB NOT NULL,
    signature TEXT NOT NULL,
    records INTEGER NOT NULL,
    states INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'batch',
    prev TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    body BLOB NOT NULL,
    signature TEXT NOT NULL,
    records INTEGER NOT NULL,
    states INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_vitals (
    device TEXT PRIMARY KEY,
    incarnation INTEGER NOT NULL,
    t INTEGER,
    received_ms INTEGER NOT NULL,
    heap_free INTEGER,
    heap_low INTEGER,
    uptime_s INTEGER,
    buffered INTEGER,
    buffer_bytes INTEGER,
    dropped INTEGER,
    reconnects INTEGER,
    config_version INTEGER,
    resets INTEGER,
    link_failures INTEGER,
    hint_ms INTEGER,
    rssi INTEGER,
    consent TEXT,
    why TEXT,
    config_status TEXT,
    reason TEXT,
    reset_cause TEXT,
    link_error TEXT,
    fw TEXT,
    profile TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS update_offers (
    device TEXT PRIMARY KEY,
    bundle TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    published_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS update_bundles (
    key TEXT PRIMARY KEY,
    downloads INTEGER NOT NULL,
    last_download_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    device TEXT,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    head BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_device ON quarantine (device, id);
"""

# Tables added within a version (quarantine) are made by _SCHEMA when missing: see Store.open.
# Version 4 -> 5: update_offers, update_bundles (made by _SCHEMA itself).
# Version 3 -> 4: device_vitals (made by _SCHEMA itself).
# Version 1 -> 2: the claimed floor per device, gaps in the spool, the dead-letter table (made
# by _SCHEMA itself).
_MIGRATE_FROM_1 = """
ALTER TABLE devices ADD COLUMN floor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spool ADD COLUMN kind TEXT NOT NULL DEFAULT 'batch';
ALTER TABLE spool ADD COLUMN prev TEXT NOT NULL DEFAULT '';
"""
# Version 2 -> 3: the registry is per (device, incarnation); what older devices sent is
# incarnation 0 (protocol.record version 1).
_MIGRATE_FROM_2 = """
INSERT INTO streams (device, incarnation, acked, records, last_seen_ms, floor)
    SELECT device, 0, acked, records, last_seen_ms, floor FROM devices;
INSERT INTO ahead_seqs (device, incarnation, seq) SELECT device, 0, seq FROM ahead;
DROP TABLE devices;
DROP TABLE ahead;
"""

# Records waiting: a drop's records were dropped, not waiting (spool budget).
_COUNT_SPOOL = (f"SELECT count(*), coalesce(sum(CASE WHEN kind = '{KIND_DROP}' THEN 0"
                " ELSE records END), 0) FROM spool")
_TABLES = tuple(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))
_VITALS_COLUMNS = ("device", "incarnation", "t", "received_ms", *VITALS)
_UPSERT_VITALS = (
    f"INSERT INTO device_vitals ({', '.join(_VITALS_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_VITALS_COLUMNS))}) ON CONFLICT (device) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _VITALS_COLUMNS[1:]))
_SELECT_VITALS = f"SELECT {', '.join(_VITALS_COLUMNS)} FROM device_vitals"

Stream = tuple[str, int]  # (device, incarnation): the unit a seq registry and an ack cover


@dataclass(frozen=True)
class InboxRecord:
    device: str
    seq: int
    payload: bytes
    received_ms: int


@dataclass(frozen=True)
class InboxState:
    device: str
    payload: bytes
    received_ms: int


@dataclass(frozen=True)
class DeviceVitals:
    """The vitals of one device's latest accepted state."""

    device: str
    incarnation: int
    t: int | None  # the device's clock when it sent the state
    received_ms: int
    values: dict[str, Any] = field(default_factory=dict)  # VITALS names -> value or None

    @classmethod
    def from_state(cls, state: dict[str, Any], received_ms: int) -> DeviceVitals:
        """From a state protocol.state.decode accepted."""
        return cls(state["d"], int(state.get("i", 0)), state.get("t"), received_ms,
                   {name: state.get(name) for name in VITALS})

    def to_obj(self) -> dict[str, Any]:
        return {"device": self.device, "incarnation": self.incarnation, "t": self.t,
                "received_ms": self.received_ms, **self.values}


@dataclass(frozen=True)
class TrackerChange:
    """What one ingest commit changes for one stream (device, incarnation)."""

    stream: Stream
    before: SeqTracker
    after: SeqTracker
    stored: int
    seen_ms: int


@dataclass(frozen=True)
class SpooledBatch:
    seq: int
    digest: str
    body: bytes
    signature: str
    records: int
    states: int
    created_ms: int
    kind: str = KIND_BATCH
    prev: str = ""  # digest of the batch before it ("" in rows spooled by schema version 1)


@dataclass(frozen=True)
class SpoolRow:
    """One spool row without its body (what the spool budget weighs)."""

    seq: int
    kind: str
    bytes: int
    records: int
    states: int
    created_ms: int
    digest: str
    prev: str


@dataclass(frozen=True)
class QuarantineRow:
    device: str | None  # the device whose topic carried it (None when the topic names none)
    topic: str
    reason: str
    size: int  # bytes of the whole payload
    at_ms: int
    head: bytes  # its first bytes (at most 64)

    def to_obj(self) -> dict[str, Any]:
        return {"device": self.device, "topic": self.topic, "reason": self.reason,
                "size": self.size, "at_ms": self.at_ms}


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    digest: str
    records: int
    states: int
    status: int  # what the cloud answered
    reason: str
    dead_ms: int


@dataclass(frozen=True)
class ChainHead:
    seq: int
    digest: str


@dataclass(frozen=True)
class StoreStats:
    inbox: int
    states: int
    spool_batches: int
    spool_records: int
    head: ChainHead
    devices: int
    dead_letters: int
    latest_dead_letters: tuple[DeadLetter, ...]  # the newest few, newest first
    devices_with_vitals: int = 0
    spool_bytes: int = 0  # bytes of the sealed bodies waiting
    spool_oldest_ms: int | None = None  # when the oldest waiting batch was sealed
    dropped_batches: int = 0  # dropped unsent by the spool budget, since the store was made
    dropped_records: int = 0
    quarantine_total: int = 0  # every message refused at ingest (kept or not)
    quarantine_kept: int = 0  # rows in the quarantine table
    latest_quarantine: tuple[QuarantineRow, ...] = ()  # newest first


def _private_file(path: Path) -> None:
    """Create `path` 0600 (and its directory 0700) unless it exists; SQLite gives its -wal and
    -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class Store:
    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # In-process writers queue on this lock instead of SQLite's busy handler, which sleeps
        # in steps of up to 100 ms and made ingest commits wait behind the batcher.
        self._write_lock = threading.Lock()
        self._stats_lock = threading.Lock()  # one shared connection for short-lived threads
        self._stats_db: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self._path

    # -- connections ------------------------------------------------------------------------
    def open(self) -> None:
        """Create the file and schema if needed; refuse a database of another schema version."""
        _private_file(self._path)
        db = self._db()
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, 2, 3, 4, SCHEMA_VERSION):
                raise StoreError(f"{self._path} has schema version {version}, "
                                 f"this gateway knows {SCHEMA_VERSION}")
            if version == SCHEMA_VERSION and self._has_every_table(db):
                if self._spool_bytes(db) is None:
                    self._start_spool_count(db)
                return  # nothing else to write: a gateway whose disk is full opens its store
            # One transaction: a crash mid-migration leaves the old version, never half of both.
            script = "BEGIN IMMEDIATE;" + (_MIGRATE_FROM_1 if version == 1 else "") + _SCHEMA
            script += _MIGRATE_FROM_2 if version in (1, 2) else ""
            script += (f"INSERT OR IGNORE INTO chain (id, seq, digest) VALUES (1, 0, '{GENESIS}');"
                       f"INSERT OR IGNORE INTO cursors (name, value) SELECT '{SPOOL_BYTES}',"
                       " coalesce(sum(length(body)), 0) FROM spool;"
                       f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            db.executescript(script)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open {self._path}: {exc}") from exc

    @staticmethod
    def _start_spool_count(db: sqlite3.Connection) -> None:
        """The spool's byte counter from the spool itself; without room for it, spool_usage
        scans instead until a later start makes it."""
        try:
            db.execute("INSERT OR IGNORE INTO cursors (name, value) SELECT ?,"
                       " coalesce(sum(length(body)), 0) FROM spool", (SPOOL_BYTES,))
        except sqlite3.OperationalError:
            pass

    @staticmethod
    def _has_every_table(db: sqlite3.Connection) -> bool:
        names = _TABLES
        have = db.execute(f"SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'index')"
                          f" AND name IN ({', '.join('?' * len(names))})", names).fetchone()[0]
        return bool(have == len(names))

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self._path, timeout=self._busy_timeout_s,
                                 isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open {self._path}: {exc}") from exc
        with self._all_lock:
            self._all.append(db)
        return db

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (the gateway's threads are few and long-lived)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def stats(self) -> StoreStats:
        """Counts for the status endpoint; safe from any (short-lived) thread."""
        with self._stats_lock:
            if self._stats_db is None:
                self._stats_db = self._connect()
            db = self._stats_db
            try:
                db.execute("BEGIN")
                inbox = db.execute("SELECT count(*) FROM inbox").fetchone()[0]
                states = db.execute("SELECT count(*) FROM states").fetchone()[0]
                batches, records = db.execute(
                    _COUNT_SPOOL).fetchone()
                seq, dig = db.execute("SELECT seq, digest FROM chain WHERE id = 1").fetchone()
                devices = db.execute("SELECT count(DISTINCT device) FROM streams").fetchone()[0]
                dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
                latest = tuple(self._dead_letters(db, 5))
                vitals = db.execute("SELECT count(*) FROM device_vitals").fetchone()[0]
                spool_bytes, oldest = self._spool_usage(db)
                named = dict(db.execute(
                    "SELECT name, value FROM cursors WHERE name IN (?, ?, ?)",
                    (DROPPED_BATCHES, DROPPED_RECORDS, QUARANTINE_TOTAL)).fetchall())
                kept = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
                quarantined = tuple(self._quarantine_latest(db, 20))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read {self._path}: {exc}") from exc
        return StoreStats(int(inbox), int(states), int(batches), int(records),
                          ChainHead(int(seq), str(dig)), int(devices), int(dead), latest,
                          int(vitals), spool_bytes, oldest,
                          int(named.get(DROPPED_BATCHES, 0)), int(named.get(DROPPED_RECORDS, 0)),
                          int(named.get(QUARANTINE_TOTAL, 0)), int(kept), quarantined)

    def latest_vitals(self, limit: int = 200) -> list[DeviceVitals]:
        """The latest vitals of up to `limit` devices, by device id; safe from any thread."""
        with self._stats_lock:
            if self._stats_db is None:
                self._stats_db = self._connect()
            try:
                rows = self._stats_db.execute(_SELECT_VITALS + " ORDER BY device LIMIT ?",
                                              (limit,)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read {self._path}: {exc}") from exc
        return [DeviceVitals(r[0], r[1], r[2], r[3], dict(zip(VITALS, r[4:], strict=True)))
                for r in rows]

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for db in conns:
            db.close()
        self._local = threading.local()
        self._stats_db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT on this thread's connection; ROLLBACK on any error."""
        db = self._db()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- seq registry + inbox (ingest) ------------------------------------------------------
    def load_trackers(self) -> dict[Stream, SeqTracker]:
        db = self._db()
        ahead: dict[Stream, set[int]] = {}
        for dev, inc, seq in db.execute("SELECT device, incarnation, seq FROM ahead_seqs"):
            ahead.setdefault((dev, inc), set()).add(seq)
        return {(dev, inc): SeqTracker.restored(acked, ahead.pop((dev, inc), set()), floor)
                for dev, inc, acked, floor in db.execute(
                    "SELECT device, incarnation, acked, floor FROM streams")}

    def commit_ingest(self, records: list[InboxRecord], states: list[InboxState],
                      changes: Iterable[TrackerChange],
                      vitals: Iterable[DeviceVitals] = ()) -> None:
        """Store accepted records and states, the registry changes and each device's latest
        vitals in one durable commit."""
        upserts = []
        ahead_add: list[tuple[str, int, int]] = []
        ahead_del: list[tuple[str, int, int]] = []
        for ch in changes:
            dev, inc = ch.stream
            upserts.append((dev, inc, ch.after.acked, ch.stored, ch.seen_ms, ch.after.floor))
            ahead_add.extend((dev, inc, s) for s in ch.after.ahead - ch.before.ahead)
            ahead_del.extend((dev, inc, s) for s in ch.before.ahead - ch.after.ahead)
        with self.transaction() as db:
            if records:
                db.executemany(
                    "INSERT INTO inbox (device, seq, payload, received_ms) VALUES (?, ?, ?, ?)",
                    [(r.device, r.seq, r.payload, r.received_ms) for r in records])
            if states:
                db.executemany(
                    "INSERT INTO states (device, payload, received_ms) VALUES (?, ?, ?)",
                    [(s.device, s.payload, s.received_ms) for s in states])
            if upserts:
                db.executemany(
                    "INSERT INTO streams (device, incarnation, acked, records, last_seen_ms, floor)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (device, incarnation) DO UPDATE SET acked = excluded.acked,"
                    " records = records + excluded.records, last_seen_ms = excluded.last_seen_ms,"
                    " floor = excluded.floor",
                    upserts)
            if ahead_del:
                db.executemany("DELETE FROM ahead_seqs WHERE device = ? AND incarnation = ?"
                               " AND seq = ?", ahead_del)
            if ahead_add:
                db.executemany("INSERT INTO ahead_seqs (device, incarnation, seq) VALUES (?, ?, ?)",
                               ahead_add)
            rows = [(v.device, v.incarnation, v.t, v.received_ms,
                     *(v.values.get(name) for name in VITALS)) for v in vitals]
            if rows:
                db.executemany(_UPSERT_VITALS, rows)

    def acked(self, device: str, incarnation: int = 0) -> int:
        row = self._db().execute("SELECT acked FROM streams WHERE device = ? AND incarnation = ?",
                                 (device, incarnation)).fetchone()
        return int(row[0]) if row else 0

    def inbox_count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM inbox").fetchone()[0])

    def states_count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM states").fetchone()[0])

    def inbox_seqs(self, device: str) -> list[int]:
        """Seqs of `device` in the inbox, in arrival order (for tests and diagnostics)."""
        return [r[0] for r in self._db().execute(
            "SELECT seq FROM inbox WHERE device = ? ORDER BY id", (device,))]

    # -- batching (call inside transaction()) ----------------------------------------------
    def take_inbox(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest `limit` inbox rows as (id, payload)."""
        return list(self._db().execute(
            "SELECT id, payload FROM inbox ORDER BY id LIMIT ?", (limit,)))

    def take_states(self, limit: int) -> list[tuple[int, bytes]]:
        return list(self._db().execute(
            "SELECT id, payload FROM states ORDER BY id LIMIT ?", (limit,)))

    def delete_inbox_through(self, last_id: int) -> None:
        self._db().execute("DELETE FROM inbox WHERE id <= ?", (last_id,))

    def delete_states_through(self, last_id: int) -> None:
        self._db().execute("DELETE FROM states WHERE id <= ?", (last_id,))

    def head(self) -> ChainHead:
        seq, dig = self._db().execute("SELECT seq, digest FROM chain WHERE id = 1").fetchone()
        return ChainHead(int(seq), str(dig))

    def set_head(self, head: ChainHead) -> None:
        self._db().execute("UPDATE chain SET seq = ?, digest = ? WHERE id = 1",
                           (head.seq, head.digest))

    def add_to_spool(self, batch: SpooledBatch) -> None:
        db = self._db()
        db.execute(
            "INSERT INTO spool (seq, digest, body, signature, records, states, created_ms, kind,"
            " prev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (batch.seq, batch.digest, batch.body, batch.signature, batch.records, batch.states,
             batch.created_ms, batch.kind, batch.prev))
        self._count_spool_bytes(db, len(batch.body))

    def _delete_spooled(self, db: sqlite3.Connection, first: int, last: int) -> None:
        freed = db.execute("SELECT coalesce(sum(length(body)), 0) FROM spool"
                           " WHERE seq BETWEEN ? AND ?", (first, last)).fetchone()[0]
        db.execute("DELETE FROM spool WHERE seq BETWEEN ? AND ?", (first, last))
        self._count_spool_bytes(db, -int(freed))

    @staticmethod
    def _count_spool_bytes(db: sqlite3.Connection, n: int) -> None:
        # Only an existing counter moves (open() makes it from the spool itself): a store
        # opened without a write on a full disk scans instead, see spool_usage.
        db.execute("UPDATE cursors SET value = value + ? WHERE name = ?", (n, SPOOL_BYTES))

    @staticmethod
    def _spool_bytes(db: sqlite3.Connection) -> int | None:
        row = db.execute("SELECT value FROM cursors WHERE name = ?", (SPOOL_BYTES,)).fetchone()
        return None if row is None else int(row[0])

    # -- spool (uplink) ----------------------------------------------------------------------
    def oldest_batch(self) -> SpooledBatch | None:
        row = self._db().execute(
            "SELECT seq, digest, body, signature, records, states, created_ms, kind, prev"
            " FROM spool ORDER BY seq LIMIT 1").fetchone()
        return SpooledBatch(*row) if row else None

    def dead_letter(self, batch: SpooledBatch, status: int, reason: str, gap: SpooledBatch,
                    now_ms: int) -> None:
        """Move a refused batch out of the spool into dead_letters and put its signed gap in
        its place of the chain, in one transaction."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO dead_letters (seq, digest, body, signature, records, states,"
                " created_ms, status, reason, dead_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (batch.seq, batch.digest, batch.body, batch.signature, batch.records,
                 batch.states, batch.created_ms, status, reason, now_ms))
            self._delete_spooled(db, batch.seq, batch.seq)
            self.add_to_spool(gap)

    def dead_letters(self, limit: int = 20) -> list[DeadLetter]:
        """The newest dead letters first."""
        return self._dead_letters(self._db(), limit)

    @staticmethod
    def _dead_letters(db: sqlite3.Connection, limit: int) -> list[DeadLetter]:
        rows = db.execute(
            "SELECT seq, digest, records, states, status, reason, dead_ms FROM dead_letters"
            " ORDER BY seq DESC LIMIT ?", (limit,))
        return [DeadLetter(*row) for row in rows]

    def delete_batch(self, seq: int) -> None:
        with self.transaction() as db:
            self._delete_spooled(db, seq, seq)

    def spool_counts(self) -> tuple[int, int]:
        """(batches, records) waiting in the spool."""
        n, records = self._db().execute(
            _COUNT_SPOOL).fetchone()
        return int(n), int(records)

    # -- spool budget (gateway.spool_budget) --------------------------------------------------
    @classmethod
    def _spool_usage(cls, db: sqlite3.Connection) -> tuple[int, int | None]:
        total = cls._spool_bytes(db)
        if total is None:  # no counter yet (see _count_spool_bytes): a scan of every row
            total = int(db.execute("SELECT coalesce(sum(length(body)), 0) FROM spool")
                        .fetchone()[0])
        # The oldest batch of data by seq (a drop or a gap at the head is no data), from the
        # start of the primary key: no scan.
        oldest = db.execute("SELECT created_ms FROM spool WHERE kind = ? ORDER BY seq LIMIT 1",
                            (KIND_BATCH,)).fetchone()
        return total, None if oldest is None else int(oldest[0])

    def spool_usage(self) -> tuple[int, int | None]:
        """(bytes of the sealed bodies waiting, created_ms of the oldest batch or None)."""
        return self._spool_usage(self._db())

    def spool_rows(self, after_seq: int, limit: int) -> list[SpoolRow]:
        """Spool rows with seq > after_seq, oldest first, without their bodies."""
        return [SpoolRow(*r) for r in self._db().execute(
            "SELECT seq, kind, length(body), records, states, created_ms, digest, prev FROM spool"
            " WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))]

    def spool_body(self, seq: int) -> bytes | None:
        row = self._db().execute("SELECT body FROM spool WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def replace_with_drop(self, first: int, last: int, drop: SpooledBatch,
                          batches: int, records: int) -> None:
        """Delete spool rows first..last and put the signed drop in their place (at `last`),
        counting `batches` and `records` as dropped, in one transaction."""
        with self.transaction() as db:
            self._delete_spooled(db, first, last)
            self.add_to_spool(drop)
            for name, n in ((DROPPED_BATCHES, batches), (DROPPED_RECORDS, records)):
                self._add_to_cursor(db, name, n)

    @staticmethod
    def _add_to_cursor(db: sqlite3.Connection, name: str, n: int) -> None:
        db.execute("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT (name)"
                   " DO UPDATE SET value = value + excluded.value", (name, n))

    # -- quarantine (gateway.quarantine) -------------------------------------------------------
    def add_quarantine(self, rows: list[QuarantineRow], refused: int, per_device: int,
                       max_rows: int) -> None:
        """Keep `rows`, count `refused` messages, then trim: at most `per_device` rows of each
        device written to (its oldest go), at most `max_rows` in all (the oldest go)."""
        with self.transaction() as db:
            if rows:
                db.executemany(
                    "INSERT INTO quarantine (device, topic, reason, size, at_ms, head)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.device, r.topic, r.reason, r.size, r.at_ms, r.head) for r in rows])
            for device in {r.device for r in rows}:
                db.execute(
                    "DELETE FROM quarantine WHERE device IS ? AND id <= coalesce((SELECT id FROM"
                    " quarantine WHERE device IS ? ORDER BY id DESC LIMIT 1 OFFSET ?), -1)",
                    (device, device, per_device))
            db.execute("DELETE FROM quarantine WHERE id <= coalesce((SELECT id FROM quarantine"
                       " ORDER BY id DESC LIMIT 1 OFFSET ?), -1)", (max_rows,))
            if refused:
                self._add_to_cursor(db, QUARANTINE_TOTAL, refused)

    def quarantine(self, limit: int = 20, device: str | None = None) -> list[QuarantineRow]:
        """Quarantined messages, newest first (of one device when given)."""
        if device is None:
            return self._quarantine_latest(self._db(), limit)
        return [QuarantineRow(*r) for r in self._db().execute(
            "SELECT device, topic, reason, size, at_ms, head FROM quarantine WHERE device = ?"
            " ORDER BY id DESC LIMIT ?", (device, limit))]

    @staticmethod
    def _quarantine_latest(db: sqlite3.Connection, limit: int) -> list[QuarantineRow]:
        return [QuarantineRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in db.execute(
            "SELECT device, topic, reason, size, at_ms, head FROM quarantine"
            " ORDER BY id DESC LIMIT ?", (limit,))]

    # -- cursors (downlink) -----------------------------------------------------------------
    def cursor(self, name: str) -> int:
        row = self._db().execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, value: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO cursors (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))
