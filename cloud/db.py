"""SQLite behind the store.Store interface: connections, file modes, and every SQL statement
(the tables themselves and their versions are in cloud.schema). PostgreSQL (cloud.pg) runs the
very same SqliteStore methods through a connection adapter; `open_database` picks the backend.

One connection per request (sqlite3 connections are cheap; WAL lets readers run while one
writer commits). Writes happen only inside `transaction()` (BEGIN IMMEDIATE), with
synchronous=FULL: a 200 to a gateway means the batch is on disk, because the gateway deletes
it on that answer. The SQL sticks to what PostgreSQL also accepts (ON CONFLICT ... DO NOTHING /
DO UPDATE, no INSERT OR IGNORE, RETURNING rather than lastrowid); only the DDL, the pragmas,
the `?` placeholders and how a writer transaction begins differ, and cloud.pg bridges those.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from cloud.aggregate_db import AggregateSql
from cloud.errors import CloudError
from cloud.policy_db import PolicySql
from cloud.private import create_private_file
from cloud.rollout_db import RolloutSql
from cloud.schema import SCHEMA_VERSION, migrate
from cloud.settings import POSTGRES_SCHEMES
from cloud.store import (
    AuditRow,
    BatchRow,
    CohortRow,
    ConfigRow,
    ConsentAuditRow,
    CrlRow,
    CustomerRow,
    DeviceRow,
    GatewayRow,
    HeartbeatRow,
    ProfileRow,
    QuarantineRow,
    RegistryRow,
    SessionRow,
    Store,
    TokenRow,
)
from cloud.telemetry_db import TelemetrySql

# The range of a 64-bit INTEGER/BIGINT column: a quarantined item's seq outside it is kept in
# the item's JSON only.
_INT64 = (-(2**63), 2**63 - 1)

class DatabaseError(CloudError):
    """The database cannot be used (newer schema, unreadable path, server unreachable)."""


class Cursor(Protocol):
    """What SqliteStore uses of a cursor: sqlite3's, or psycopg's through cloud.pg."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What SqliteStore uses of a connection: `?` placeholders, rows as tuples."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class AnyDatabase(Protocol):
    """A Database (SQLite) or a cloud.pg.PgDatabase."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def connection(self) -> AbstractContextManager[Store]: ...


def open_database(target: str | Path) -> AnyDatabase:
    """The database `target` names: a postgresql:// URL, else an SQLite file path. Nothing is
    opened yet (`open()` does that)."""
    if isinstance(target, str) and target.startswith(POSTGRES_SCHEMES):
        from cloud.pg import PgDatabase  # psycopg is imported only when PostgreSQL is used

        return PgDatabase(str(target))
    return Database(Path(target))


def _make_encoder() -> Any:
    """What json.dumps(value, separators=(",", ":"), sort_keys=True) runs, built once: that
    call makes a new JSONEncoder and a new C encoder every time, which costs more than the
    encoding of a record's few metrics (the output is the same, byte for byte). No cycle check:
    every value stored is a tree of parsed JSON or plain literals."""
    encoder = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # not CPython's C accelerator: the plain call
        return None
    return c_make_encoder(
        None, encoder.default, json.encoder.encode_basestring_ascii, None,
        encoder.key_separator, encoder.item_separator, True, False, True,
    )


_ENCODER = _make_encoder()


def _dumps(value: Any) -> str:
    if _ENCODER is None or isinstance(value, str):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return "".join(_ENCODER(value, 0))


IDLE_CONNECTIONS = 8  # SQLite connections kept open between requests, per process


class Database:
    """Knows the file; `open()` creates it and the schema, `connection()` lends one connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()
        # Writers of this process queue here before BEGIN IMMEDIATE: a thread waiting for the
        # write lock is woken the moment the writer before it commits, where SQLite's busy
        # handler would poll with sleeps of up to 100 ms (other processes still meet that
        # handler). Reentrant, so a nested writer on a second connection of the same thread
        # meets SQLite's busy timeout as before instead of waiting here for ever.
        self._writers = threading.RLock()
        # Connections are kept open between requests (at most IDLE_CONNECTIONS idle): opening
        # one costs its pragmas, and closing the last one checkpoints and deletes the WAL.
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def open(self) -> None:
        """Create the file (0600, directory 0700), switch it to WAL and bring the schema up to
        SCHEMA_VERSION (idempotent)."""
        with self._lock:
            if self._ready:
                return
            self._create_private()
            conn = self._connect()
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise DatabaseError(
                        f"{self.path} has schema version {version}; this cloud knows {SCHEMA_VERSION}"
                    )
                conn.execute("PRAGMA journal_mode=WAL")
                if version < SCHEMA_VERSION:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        migrate(conn, version)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            finally:
                conn.close()
            self._ready = True

    def _create_private(self) -> None:
        try:
            create_private_file(self.path)
        except OSError as exc:
            raise DatabaseError(f"cannot create {self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        """Close the idle connections (one lent out is closed when it comes back)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for conn in idle:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; SqliteStore.transaction() issues BEGIN/COMMIT.
        # check_same_thread=False: FastAPI may open it in one worker thread and use it in another
        # (never two at once: a connection belongs to one request).
        conn = sqlite3.connect(
            str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def connection(self) -> Iterator[SqliteStore]:
        self.open()
        with self._lock:
            conn = self._idle.pop() if self._idle else None
            self._closed = False
        if conn is None:
            conn = self._connect()
        try:
            yield SqliteStore(conn, self._writers)
        finally:
            self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
        """Keep a connection for the next request, unless it is somehow still inside a
        transaction, the pool is full, or the database was closed meanwhile."""
        if not conn.in_transaction:
            with self._lock:
                if not self._closed and len(self._idle) < IDLE_CONNECTIONS:
                    self._idle.append(conn)
                    return
        conn.close()


def _gateway(row: sqlite3.Row | tuple[Any, ...] | None) -> GatewayRow | None:
    if row is None:
        return None
    return GatewayRow(
        id=row[0],
        public_key=bytes(row[1]),
        created_ms=row[2],
        last_seq=row[3],
        last_digest=row[4],
        last_batch_ms=row[5],
    )


def _quarantine(row: tuple[Any, ...]) -> QuarantineRow:
    return QuarantineRow(
        id=row[0], device=row[1], seq=row[2], gateway=row[3], batch_seq=row[4], kind=row[5],
        reason=row[6], body=row[7], received_ms=row[8],
    )


def _batch(row: tuple[Any, ...]) -> BatchRow:
    return BatchRow(
        gateway=row[0], seq=row[1], digest=row[2], prev=row[3], created_ms=row[4],
        received_ms=row[5], records=row[6], stored=row[7], states=row[8], quarantined=row[9],
        gap_status=row[10], gap_reason=row[11],
    )


def _int64_or_none(value: int | None) -> int | None:
    if value is None or not _INT64[0] <= value <= _INT64[1]:
        return None
    return value


def _device(row: tuple[Any, ...] | None) -> DeviceRow | None:
    if row is None:
        return None
    return DeviceRow(
        id=row[0],
        product=row[1],
        created_ms=row[2],
        gateway=row[3],
        last_seen_ms=row[4],
        last_seq=row[5],
        records=row[6],
        last_metrics=json.loads(row[7]),
        reported=None if row[8] is None else json.loads(row[8]),
        incarnation=row[9],
        conflicts=row[10],
        consent_tier=row[11],
        consent_incarnation=row[12],
        consent_seq=row[13],
        consent_cap=row[14],
        consent_cap_version=row[15],
    )


def _config(row: tuple[Any, ...] | None) -> ConfigRow | None:
    if row is None:
        return None
    return ConfigRow(
        revision=row[0],
        device=row[1],
        version=row[2],
        issued_ms=row[3],
        settings=json.loads(row[4]),
        envelope=row[5],
    )


_GATEWAY_COLS = "id, public_key, created_ms, last_seq, last_digest, last_batch_ms"
_DEVICE_COLS = (
    "id, product, created_ms, gateway, last_seen_ms, last_seq, records, last_metrics, reported,"
    " incarnation, conflicts, consent_tier, consent_incarnation, consent_seq, consent_cap,"
    " consent_cap_version"
)
_DEVICE_PLACES = ", ".join("?" * 16)
_AUDIT_COLS = "id, device, at_ms, origin, requested_by, from_tier, to_tier, fields, rows_changed"
_HEARTBEAT_COLS = "id, device, incarnation, t, received_ms, body"
_CONFIG_COLS = "revision, device, version, issued_ms, settings, envelope"
_BATCH_COLS = (
    "gateway, seq, digest, prev, created_ms, received_ms, records, stored, states, quarantined,"
    " gap_status, gap_reason"
)
_QUARANTINE_COLS = "id, device, seq, gateway, batch_seq, kind, reason, body, received_ms"
_REGISTRY_COLS = (
    "id, product, customer, hw_rev, cert_fingerprint, cert_serial, enrolled_ms, status,"
    " status_ms, status_reason"
)
_CUSTOMER_COLS = "id, name, created_ms, cancelled_ms"
_COHORT_COLS = "name, kind, spec, priority, created_ms, updated_ms"
_PROFILE_COLS = "id, kind, scope, version, settings, created_ms, created_by, active"


def _registry(row: tuple[Any, ...]) -> RegistryRow:
    return RegistryRow(
        device=row[0], product=row[1], customer=row[2], hw_rev=row[3], cert_fingerprint=row[4],
        cert_serial=row[5], enrolled_ms=row[6], status=row[7], status_ms=row[8],
        status_reason=row[9],
    )


def _customer(row: tuple[Any, ...]) -> CustomerRow:
    return CustomerRow(id=row[0], name=row[1], created_ms=row[2], cancelled_ms=row[3])


def _cohort(row: tuple[Any, ...]) -> CohortRow:
    return CohortRow(name=row[0], kind=row[1], spec=json.loads(row[2]), priority=row[3],
                     created_ms=row[4], updated_ms=row[5])


def _profile(row: tuple[Any, ...]) -> ProfileRow:
    return ProfileRow(id=row[0], kind=row[1], scope=row[2], version=row[3],
                      settings=json.loads(row[4]), created_ms=row[5], created_by=row[6],
                      active=bool(row[7]))


class SqliteStore(RolloutSql, AggregateSql, PolicySql, TelemetrySql):
    """store.Store over one sqlite3 connection (or, through cloud.pg, one PostgreSQL one);
    the updates' statements come from cloud.rollout_db."""

    # How a transaction begins: BEGIN IMMEDIATE takes the write lock at once, so writers are
    # serialised from their first read (cloud.pg: an advisory lock does the same).
    BEGIN: tuple[str, ...] = ("BEGIN IMMEDIATE",)

    def __init__(self, conn: Connection, writers: AbstractContextManager[Any] | None = None) -> None:
        self._conn = conn
        self._in_transaction = False
        self._writers = writers if writers is not None else nullcontext()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:
            raise RuntimeError("transactions do not nest")
        with self._writers:
            for statement in self.BEGIN:
                self._conn.execute(statement)
            self._in_transaction = True
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._in_transaction = False

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, params).fetchone()

    def ping(self) -> None:
        self._one("SELECT 1")

    # gateways ---------------------------------------------------------------------------

    def get_gateway(self, gateway_id: str) -> GatewayRow | None:
        return _gateway(self._one(f"SELECT {_GATEWAY_COLS} FROM gateways WHERE id = ?", (gateway_id,)))

    def gateway_by_token_hash(self, token_hash: str) -> GatewayRow | None:
        sql = f"SELECT {_GATEWAY_COLS} FROM gateways WHERE token_hash = ?"
        return _gateway(self._one(sql, (token_hash,)))

    def list_gateways(self) -> list[GatewayRow]:
        rows = self._conn.execute(f"SELECT {_GATEWAY_COLS} FROM gateways ORDER BY id")
        return [g for g in map(_gateway, rows) if g is not None]

    def insert_gateway(self, row: GatewayRow, token_hash: str) -> None:
        self._conn.execute(
            "INSERT INTO gateways (id, public_key, token_hash, created_ms, last_seq, last_digest)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (row.id, row.public_key, token_hash, row.created_ms, row.last_seq, row.last_digest),
        )

    def set_gateway_token(self, gateway_id: str, token_hash: str) -> None:
        self._conn.execute(
            "UPDATE gateways SET token_hash = ? WHERE id = ?", (token_hash, gateway_id)
        )

    def batch_digest(self, gateway_id: str, seq: int) -> str | None:
        row = self._one(
            "SELECT digest FROM batches WHERE gateway = ? AND seq = ?", (gateway_id, seq)
        )
        return None if row is None else str(row[0])

    def append_batch(self, row: BatchRow) -> None:
        self._conn.execute(
            f"INSERT INTO batches ({_BATCH_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.gateway, row.seq, row.digest, row.prev, row.created_ms, row.received_ms,
                row.records, row.stored, row.states, row.quarantined, row.gap_status,
                row.gap_reason,
            ),
        )
        self._conn.execute(
            "UPDATE gateways SET last_seq = ?, last_digest = ?, last_batch_ms = ? WHERE id = ?",
            (row.seq, row.digest, row.received_ms, row.gateway),
        )

    def gaps(self, gateway_id: str, limit: int) -> list[BatchRow]:
        rows = self._conn.execute(
            f"SELECT {_BATCH_COLS} FROM batches WHERE gateway = ? AND gap_status IS NOT NULL"
            " ORDER BY seq DESC LIMIT ?",
            (gateway_id, limit),
        )
        return [_batch(r) for r in rows]

    def gap_counts(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT gateway, COUNT(*) FROM batches WHERE gap_status IS NOT NULL GROUP BY gateway"
        )
        return {r[0]: int(r[1]) for r in rows}

    # devices and telemetry --------------------------------------------------------------

    def get_device(self, device_id: str) -> DeviceRow | None:
        return _device(self._one(f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?", (device_id,)))

    def list_devices(self) -> list[DeviceRow]:
        rows = self._conn.execute(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY id")
        return [d for d in map(_device, rows) if d is not None]

    def insert_device(self, row: DeviceRow) -> bool:
        cur = self._conn.execute(
            f"INSERT INTO devices ({_DEVICE_COLS}) VALUES ({_DEVICE_PLACES})"
            " ON CONFLICT (id) DO NOTHING",
            self._device_params(row),
        )
        return cur.rowcount == 1

    def save_device(self, row: DeviceRow) -> None:
        self._conn.execute(
            f"INSERT INTO devices ({_DEVICE_COLS}) VALUES ({_DEVICE_PLACES})"
            " ON CONFLICT (id) DO UPDATE SET product = excluded.product,"
            " gateway = excluded.gateway, last_seen_ms = excluded.last_seen_ms,"
            " last_seq = excluded.last_seq, records = excluded.records,"
            " last_metrics = excluded.last_metrics, reported = excluded.reported,"
            " incarnation = excluded.incarnation, conflicts = excluded.conflicts,"
            " consent_tier = excluded.consent_tier,"
            " consent_incarnation = excluded.consent_incarnation,"
            " consent_seq = excluded.consent_seq, consent_cap = excluded.consent_cap,"
            " consent_cap_version = excluded.consent_cap_version",
            self._device_params(row),
        )

    @staticmethod
    def _device_params(row: DeviceRow) -> tuple[Any, ...]:
        return (
            row.id, row.product, row.created_ms, row.gateway, row.last_seen_ms, row.last_seq,
            row.records, _dumps(row.last_metrics),
            None if row.reported is None else _dumps(row.reported), row.incarnation,
            row.conflicts, row.consent_tier, row.consent_incarnation, row.consent_seq,
            row.consent_cap, row.consent_cap_version,
        )

    # consent and vitals -----------------------------------------------------------------

    def insert_consent_audit(self, row: ConsentAuditRow) -> None:
        self._conn.execute(
            "INSERT INTO consent_audit (device, at_ms, origin, requested_by, from_tier, to_tier,"
            " fields, rows_changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row.device, row.at_ms, row.origin, row.requested_by, row.from_tier, row.to_tier,
             _dumps(list(row.fields)), row.rows),
        )

    def consent_audit(self, device_id: str, limit: int) -> list[ConsentAuditRow]:
        rows = self._conn.execute(
            f"SELECT {_AUDIT_COLS} FROM consent_audit WHERE device = ? ORDER BY id DESC LIMIT ?",
            (device_id, limit),
        )
        return [
            ConsentAuditRow(id=r[0], device=r[1], at_ms=r[2], origin=r[3], requested_by=r[4],
                            from_tier=r[5], to_tier=r[6], fields=json.loads(r[7]), rows=r[8])
            for r in rows
        ]

    def insert_heartbeats(self, rows: Sequence[HeartbeatRow], keep: int) -> None:
        if not rows:
            return
        self._conn.executemany(
            "INSERT INTO heartbeats (device, incarnation, t, received_ms, body)"
            " VALUES (?, ?, ?, ?, ?)",
            [(r.device, r.incarnation, r.t, r.received_ms, _dumps(r.body)) for r in rows],
        )
        for device_id in sorted({r.device for r in rows}):
            # The oldest row still kept, found by the (device, t, id) index: everything older
            # goes. One index walk of `keep` entries and a ranged delete per device and batch.
            edge = self._one(
                "SELECT t, id FROM heartbeats WHERE device = ? ORDER BY t DESC, id DESC"
                " LIMIT 1 OFFSET ?",
                (device_id, keep - 1),
            )
            if edge is not None:
                self._conn.execute(
                    "DELETE FROM heartbeats WHERE device = ? AND (t < ? OR (t = ? AND id < ?))",
                    (device_id, edge[0], edge[0], edge[1]),
                )

    def heartbeats(self, device_id: str, limit: int) -> list[HeartbeatRow]:
        rows = self._conn.execute(
            f"SELECT {_HEARTBEAT_COLS} FROM heartbeats WHERE device = ?"
            " ORDER BY t DESC, id DESC LIMIT ?",
            (device_id, limit),
        )
        return [
            HeartbeatRow(id=r[0], device=r[1], incarnation=r[2], t=r[3], received_ms=r[4],
                         body=json.loads(r[5]))
            for r in rows
        ]

    def incarnations(self, device_id: str) -> list[int]:
        rows = self._conn.execute(
            "SELECT incarnation FROM incarnations WHERE device = ? ORDER BY ordinal", (device_id,)
        )
        return [int(r[0]) for r in rows]

    def add_incarnation(self, device_id: str, incarnation: int, now_ms: int) -> None:
        self._conn.execute(
            "INSERT INTO incarnations (device, incarnation, ordinal, first_ms)"
            " SELECT ?, ?, COALESCE(MAX(ordinal), 0) + 1, ? FROM incarnations WHERE device = ?",
            (device_id, incarnation, now_ms, device_id),
        )

    def record_key(self, device_id: str) -> bytes | None:
        row = self._one("SELECT record_key FROM record_keys WHERE device = ?", (device_id,))
        return None if row is None else bytes(row[0])

    def set_record_key(self, device_id: str, key: bytes, now_ms: int) -> None:
        self._conn.execute(
            "INSERT INTO record_keys (device, record_key, created_ms) VALUES (?, ?, ?)",
            (device_id, key, now_ms),
        )

    def record_key_devices(self) -> set[str]:
        return {str(r[0]) for r in self._conn.execute("SELECT device FROM record_keys")}

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("gateways", "batches", "devices", "configs", "quarantine"):
            out[table] = int(self._one(f"SELECT COUNT(*) FROM {table}")[0])
        out["telemetry"] = self.telemetry_count()
        return out

    # quarantine -------------------------------------------------------------------------

    def insert_quarantine(self, rows: Sequence[QuarantineRow]) -> None:
        if not rows:
            return
        self._conn.executemany(
            "INSERT INTO quarantine (device, seq, gateway, batch_seq, kind, reason, body,"
            " received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.device, _int64_or_none(r.seq), r.gateway, r.batch_seq, r.kind, r.reason,
                 r.body, r.received_ms)
                for r in rows
            ],
        )

    def quarantine(self, device_id: str | None, limit: int) -> list[QuarantineRow]:
        if device_id is None:
            rows = self._conn.execute(
                f"SELECT {_QUARANTINE_COLS} FROM quarantine ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._conn.execute(
                f"SELECT {_QUARANTINE_COLS} FROM quarantine WHERE device = ?"
                " ORDER BY id DESC LIMIT ?",
                (device_id, limit),
            )
        return [_quarantine(r) for r in rows]

    def quarantine_counts(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT device, COUNT(*) FROM quarantine WHERE device IS NOT NULL GROUP BY device"
        )
        return {r[0]: int(r[1]) for r in rows}

    def quarantine_count(self, device_id: str) -> int:
        return int(self._one("SELECT COUNT(*) FROM quarantine WHERE device = ?", (device_id,))[0])

    # desired config ---------------------------------------------------------------------

    def latest_config(self, device_id: str) -> ConfigRow | None:
        return _config(
            self._one(
                f"SELECT {_CONFIG_COLS} FROM configs WHERE device = ?"
                " ORDER BY version DESC LIMIT 1",
                (device_id,),
            )
        )

    def insert_config(
        self, device_id: str, version: int, issued_ms: int, settings: dict[str, Any], envelope: str
    ) -> int:
        row = self._one(
            "INSERT INTO configs (device, version, issued_ms, settings, envelope)"
            " VALUES (?, ?, ?, ?, ?) RETURNING revision",
            (device_id, version, issued_ms, _dumps(settings), envelope),
        )
        return int(row[0])

    def configs_after(self, revision: int, gateway_id: str) -> list[ConfigRow]:
        rows = self._conn.execute(
            f"SELECT {', '.join('c.' + c for c in _CONFIG_COLS.split(', '))} FROM configs c"
            " JOIN (SELECT device, MAX(revision) AS revision FROM configs GROUP BY device) latest"
            " ON latest.revision = c.revision"
            " LEFT JOIN devices d ON d.id = c.device"
            " WHERE c.revision > ? AND (d.gateway IS NULL OR d.gateway = ?)"
            " ORDER BY c.revision",
            (revision, gateway_id),
        )
        return [c for c in map(_config, rows) if c is not None]

    def reannounce_config(self, device_id: str) -> int | None:
        latest = self.latest_config(device_id)
        if latest is None:
            return None
        # The next revision is allocated the way an insert would be: above every revision
        # that exists (SQLite's AUTOINCREMENT then continues above it; PostgreSQL: nextval).
        revision = self.max_config_revision() + 1
        self._conn.execute(
            "UPDATE configs SET revision = ? WHERE revision = ?", (revision, latest.revision)
        )
        return revision

    def max_config_revision(self) -> int:
        return int(self._one("SELECT COALESCE(MAX(revision), 0) FROM configs")[0])

    def desired_versions(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT device, MAX(version) FROM configs GROUP BY device")
        return {r[0]: int(r[1]) for r in rows}

    # series (cloud.services.series) -----------------------------------------------------

    def heartbeats_between(
        self, device_id: str, from_ms: int, to_ms: int, limit: int
    ) -> list[HeartbeatRow]:
        rows = self._conn.execute(
            f"SELECT {_HEARTBEAT_COLS} FROM heartbeats WHERE device = ? AND t >= ? AND t < ?"
            " ORDER BY t, id LIMIT ?",
            (device_id, from_ms, to_ms, limit),
        )
        return [
            HeartbeatRow(id=r[0], device=r[1], incarnation=r[2], t=r[3], received_ms=r[4],
                         body=json.loads(r[5]))
            for r in rows
        ]

    # access: tokens, audit, dashboard sessions ------------------------------------------

    _TOKEN_COLS = (
        "id, name, role, customer, created_ms, created_by, expires_ms, revoked_ms, last_used_ms"
    )
    _AUDIT_LOG_COLS = (
        "id, at_ms, actor, role, token_id, action, target, before_value, after_value, outcome,"
        " reason"
    )
    _SESSION_COLS = "id_hash, token_id, role, name, created_ms, expires_ms, csrf"

    def _returning(self, sql: str, params: Sequence[Any]) -> Any:
        # fetchall: the statement runs to its end (and its write is done) before we return
        return self._conn.execute(sql, params).fetchall()[0]

    @staticmethod
    def _token(r: Sequence[Any] | None) -> TokenRow | None:
        if r is None:
            return None
        return TokenRow(id=int(r[0]), name=r[1], role=r[2], customer=r[3], created_ms=r[4],
                        created_by=r[5], expires_ms=r[6], revoked_ms=r[7], last_used_ms=r[8])

    def insert_token(self, row: TokenRow, token_hash: str) -> int:
        r = self._returning(
            "INSERT INTO tokens (name, role, customer, token_hash, created_ms, created_by,"
            " expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (row.name, row.role, row.customer, token_hash, row.created_ms, row.created_by,
             row.expires_ms),
        )
        return int(r[0])

    def token_by_hash(self, token_hash: str) -> TokenRow | None:
        return self._token(self._one(
            f"SELECT {self._TOKEN_COLS} FROM tokens WHERE token_hash = ?", (token_hash,)))

    def get_token(self, token_id: int) -> TokenRow | None:
        return self._token(self._one(
            f"SELECT {self._TOKEN_COLS} FROM tokens WHERE id = ?", (token_id,)))

    def list_tokens(self) -> list[TokenRow]:
        rows = self._conn.execute(f"SELECT {self._TOKEN_COLS} FROM tokens ORDER BY id")
        return [t for t in map(self._token, rows) if t is not None]

    def revoke_token(self, token_id: int, now_ms: int) -> None:
        self._conn.execute(
            "UPDATE tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
            (now_ms, token_id),
        )

    def touch_token(self, token_id: int, now_ms: int) -> None:
        self._conn.execute("UPDATE tokens SET last_used_ms = ? WHERE id = ?", (now_ms, token_id))

    def insert_audit(self, row: AuditRow) -> int:
        r = self._returning(
            "INSERT INTO audit_log (at_ms, actor, role, token_id, action, target, before_value,"
            " after_value, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (row.at_ms, row.actor, row.role, row.token_id, row.action, row.target, row.before,
             row.after, row.outcome, row.reason),
        )
        return int(r[0])

    def audit_entries(
        self, limit: int, before: int | None, actor: str | None, action: str | None,
        target: str | None, outcome: str | None = None,
    ) -> list[AuditRow]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("id < ?", before), ("actor = ?", actor), ("action = ?", action),
                              ("target = ?", target), ("outcome = ?", outcome)):
            if value is not None:
                where.append(column)
                params.append(value)
        sql = f"SELECT {self._AUDIT_LOG_COLS} FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            AuditRow(id=int(r[0]), at_ms=r[1], actor=r[2], role=r[3], token_id=r[4], action=r[5],
                     target=r[6], before=r[7], after=r[8], outcome=r[9], reason=r[10])
            for r in rows
        ]

    def insert_session(self, row: SessionRow) -> None:
        self._conn.execute(
            f"INSERT INTO sessions ({self._SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.id_hash, row.token_id, row.role, row.name, row.created_ms, row.expires_ms,
             row.csrf),
        )

    def session_by_hash(self, id_hash: str) -> SessionRow | None:
        r = self._one(f"SELECT {self._SESSION_COLS} FROM sessions WHERE id_hash = ?", (id_hash,))
        if r is None:
            return None
        return SessionRow(id_hash=r[0], token_id=r[1], role=r[2], name=r[3], created_ms=r[4],
                          expires_ms=r[5], csrf=r[6])

    def delete_session(self, id_hash: str) -> None:
        self._conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    def delete_sessions_before(self, now_ms: int) -> None:
        self._conn.execute("DELETE FROM sessions WHERE expires_ms < ?", (now_ms,))

    # registry, customers, cohorts, profiles, revocation lists --------------------------

    def registry(self, device_id: str) -> RegistryRow | None:
        row = self._one(f"SELECT {_REGISTRY_COLS} FROM devices WHERE id = ?", (device_id,))
        return None if row is None else _registry(row)

    def registries(self, customer: str | None = None) -> list[RegistryRow]:
        if customer is None:
            rows = self._conn.execute(f"SELECT {_REGISTRY_COLS} FROM devices ORDER BY id")
        else:
            rows = self._conn.execute(
                f"SELECT {_REGISTRY_COLS} FROM devices WHERE customer = ? ORDER BY id",
                (customer,),
            )
        return [_registry(r) for r in rows]

    def set_registry(self, row: RegistryRow) -> None:
        self._conn.execute(
            "UPDATE devices SET customer = ?, hw_rev = ?, cert_fingerprint = ?, cert_serial = ?,"
            " enrolled_ms = ?, status = ?, status_ms = ?, status_reason = ? WHERE id = ?",
            (row.customer, row.hw_rev, row.cert_fingerprint, row.cert_serial, row.enrolled_ms,
             row.status, row.status_ms, row.status_reason, row.device),
        )

    def revoked_devices(self) -> list[RegistryRow]:
        rows = self._conn.execute(
            f"SELECT {_REGISTRY_COLS} FROM devices WHERE status = ? ORDER BY id", ("revoked",)
        )
        return [_registry(r) for r in rows]

    def insert_customer(self, row: CustomerRow) -> bool:
        cur = self._conn.execute(
            f"INSERT INTO customers ({_CUSTOMER_COLS}) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            (row.id, row.name, row.created_ms, row.cancelled_ms),
        )
        return cur.rowcount == 1

    def get_customer(self, customer_id: str) -> CustomerRow | None:
        row = self._one(f"SELECT {_CUSTOMER_COLS} FROM customers WHERE id = ?", (customer_id,))
        return None if row is None else _customer(row)

    def list_customers(self) -> list[CustomerRow]:
        rows = self._conn.execute(f"SELECT {_CUSTOMER_COLS} FROM customers ORDER BY id")
        return [_customer(r) for r in rows]

    def set_customer_cancelled(self, customer_id: str, now_ms: int) -> None:
        self._conn.execute(
            "UPDATE customers SET cancelled_ms = ? WHERE id = ?", (now_ms, customer_id)
        )

    def save_cohort(self, row: CohortRow) -> None:
        self._conn.execute(
            f"INSERT INTO cohorts ({_COHORT_COLS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, spec = excluded.spec,"
            " priority = excluded.priority, updated_ms = excluded.updated_ms",
            (row.name, row.kind, _dumps(row.spec), row.priority, row.created_ms, row.updated_ms),
        )

    def get_cohort(self, name: str) -> CohortRow | None:
        row = self._one(f"SELECT {_COHORT_COLS} FROM cohorts WHERE name = ?", (name,))
        return None if row is None else _cohort(row)

    def list_cohorts(self) -> list[CohortRow]:
        rows = self._conn.execute(f"SELECT {_COHORT_COLS} FROM cohorts ORDER BY name")
        return [_cohort(r) for r in rows]

    def delete_cohort(self, name: str) -> bool:
        cur = self._conn.execute("DELETE FROM cohorts WHERE name = ?", (name,))
        return cur.rowcount == 1

    def insert_profile(self, row: ProfileRow) -> None:
        self._conn.execute(
            "UPDATE profiles SET active = 0 WHERE kind = ? AND scope = ?", (row.kind, row.scope)
        )
        self._conn.execute(
            "INSERT INTO profiles (kind, scope, version, settings, created_ms, created_by, active)"
            " VALUES (?, ?, ?, ?, ?, ?, 1)",
            (row.kind, row.scope, row.version, _dumps(row.settings), row.created_ms,
             row.created_by),
        )

    def profiles(self, kind: str, scope: str) -> list[ProfileRow]:
        rows = self._conn.execute(
            f"SELECT {_PROFILE_COLS} FROM profiles WHERE kind = ? AND scope = ?"
            " ORDER BY version DESC",
            (kind, scope),
        )
        return [_profile(r) for r in rows]

    def active_profiles(self) -> list[ProfileRow]:
        rows = self._conn.execute(
            f"SELECT {_PROFILE_COLS} FROM profiles WHERE active = 1 ORDER BY kind, scope"
        )
        return [_profile(r) for r in rows]

    def insert_crl(self, row: CrlRow) -> None:
        self._conn.execute(
            "INSERT INTO crls (der, number, created_ms, uploaded_by) VALUES (?, ?, ?, ?)",
            (row.der, row.number, row.created_ms, row.uploaded_by),
        )

    def latest_crl(self) -> CrlRow | None:
        row = self._one(
            "SELECT id, der, number, created_ms, uploaded_by FROM crls ORDER BY id DESC LIMIT 1"
        )
        if row is None:
            return None
        return CrlRow(id=row[0], der=bytes(row[1]), number=row[2], created_ms=row[3],
                      uploaded_by=row[4])

    # liveness and drift, read in bulk (cloud.services.drift) -----------------------------

    def latest_configs(self) -> dict[str, ConfigRow]:
        rows = self._conn.execute(
            "SELECT c.revision, c.device, c.version, c.issued_ms, c.settings, c.envelope"
            " FROM configs c JOIN (SELECT device, MAX(version) AS version FROM configs"
            " GROUP BY device) m ON c.device = m.device AND c.version = m.version"
        )
        out: dict[str, ConfigRow] = {}
        for r in rows:
            row = _config(tuple(r))
            if row is not None:
                out[row.device] = row
        return out
