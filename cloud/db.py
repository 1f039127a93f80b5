"""SQLite behind the store.Store interface: the schema, connections, and every SQL statement.

One connection per request (sqlite3 connections are cheap; WAL lets readers run while one
writer commits). Writes happen only inside `transaction()` (BEGIN IMMEDIATE), with
synchronous=FULL: a 200 to a gateway means the batch is on disk, because the gateway deletes
it on that answer. The SQL sticks to what PostgreSQL also accepts (ON CONFLICT ... DO NOTHING /
DO UPDATE, no INSERT OR IGNORE); only the DDL, the pragmas and the `?` placeholders differ.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cloud.errors import CloudError
from cloud.store import BatchRow, ConfigRow, DeviceRow, GatewayRow, TelemetryRow

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    id            TEXT PRIMARY KEY,
    public_key    BLOB NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_ms    INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    last_digest   TEXT NOT NULL,
    last_batch_ms INTEGER
);
CREATE TABLE IF NOT EXISTS batches (
    gateway     TEXT NOT NULL REFERENCES gateways (id),
    seq         INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    prev        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    records     INTEGER NOT NULL,
    stored      INTEGER NOT NULL,
    states      INTEGER NOT NULL,
    PRIMARY KEY (gateway, seq)
);
CREATE TABLE IF NOT EXISTS devices (
    id           TEXT PRIMARY KEY,
    product      TEXT,
    created_ms   INTEGER NOT NULL,
    gateway      TEXT,
    last_seen_ms INTEGER,
    last_seq     INTEGER NOT NULL DEFAULT 0,
    records      INTEGER NOT NULL DEFAULT 0,
    last_metrics TEXT NOT NULL DEFAULT '{}',
    reported     TEXT
);
CREATE TABLE IF NOT EXISTS telemetry (
    device    TEXT NOT NULL REFERENCES devices (id),
    seq       INTEGER NOT NULL,
    t         INTEGER NOT NULL,
    m         TEXT NOT NULL,
    gateway   TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS configs (
    revision  INTEGER PRIMARY KEY AUTOINCREMENT,
    device    TEXT NOT NULL REFERENCES devices (id),
    version   INTEGER NOT NULL,
    issued_ms INTEGER NOT NULL,
    settings  TEXT NOT NULL,
    envelope  TEXT NOT NULL,
    UNIQUE (device, version)
);
"""


class DatabaseError(CloudError):
    """The database file cannot be used (newer schema, unreadable path)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Database:
    """Knows the file; `open()` creates it and the schema, `connection()` lends one connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the file, switch it to WAL and apply the schema (idempotent)."""
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise DatabaseError(
                        f"{self.path} has schema version {version}; this cloud knows {SCHEMA_VERSION}"
                    )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            finally:
                conn.close()
            self._ready = True

    def close(self) -> None:
        """Nothing is pooled; kept so a pooled store can release its connections here."""

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
        conn = self._connect()
        try:
            yield SqliteStore(conn)
        finally:
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
    "id, product, created_ms, gateway, last_seen_ms, last_seq, records, last_metrics, reported"
)
_CONFIG_COLS = "revision, device, version, issued_ms, settings, envelope"


class SqliteStore:
    """store.Store over one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._in_transaction = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:
            raise RuntimeError("transactions do not nest")
        self._conn.execute("BEGIN IMMEDIATE")
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
            "INSERT INTO batches (gateway, seq, digest, prev, created_ms, received_ms, records,"
            " stored, states) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.gateway, row.seq, row.digest, row.prev, row.created_ms, row.received_ms,
                row.records, row.stored, row.states,
            ),
        )
        self._conn.execute(
            "UPDATE gateways SET last_seq = ?, last_digest = ?, last_batch_ms = ? WHERE id = ?",
            (row.seq, row.digest, row.received_ms, row.gateway),
        )

    # devices and telemetry --------------------------------------------------------------

    def get_device(self, device_id: str) -> DeviceRow | None:
        return _device(self._one(f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?", (device_id,)))

    def list_devices(self) -> list[DeviceRow]:
        rows = self._conn.execute(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY id")
        return [d for d in map(_device, rows) if d is not None]

    def insert_device(self, row: DeviceRow) -> bool:
        cur = self._conn.execute(
            f"INSERT INTO devices ({_DEVICE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            self._device_params(row),
        )
        return cur.rowcount == 1

    def save_device(self, row: DeviceRow) -> None:
        self._conn.execute(
            f"INSERT INTO devices ({_DEVICE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET product = excluded.product,"
            " gateway = excluded.gateway, last_seen_ms = excluded.last_seen_ms,"
            " last_seq = excluded.last_seq, records = excluded.records,"
            " last_metrics = excluded.last_metrics, reported = excluded.reported",
            self._device_params(row),
        )

    @staticmethod
    def _device_params(row: DeviceRow) -> tuple[Any, ...]:
        return (
            row.id, row.product, row.created_ms, row.gateway, row.last_seen_ms, row.last_seq,
            row.records, _dumps(row.last_metrics),
            None if row.reported is None else _dumps(row.reported),
        )

    def insert_telemetry(self, rows: Sequence[TelemetryRow]) -> int:
        if not rows:
            return 0
        cur = self._conn.executemany(
            "INSERT INTO telemetry (device, seq, t, m, gateway, batch_seq)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device, seq) DO NOTHING",
            [(r.device, r.seq, r.t, _dumps(r.m), r.gateway, r.batch_seq) for r in rows],
        )
        return cur.rowcount

    def telemetry(self, device_id: str, after_seq: int, limit: int) -> list[TelemetryRow]:
        rows = self._conn.execute(
            "SELECT device, seq, t, m, gateway, batch_seq FROM telemetry"
            " WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?",
            (device_id, after_seq, limit),
        )
        return [
            TelemetryRow(device=r[0], seq=r[1], t=r[2], m=json.loads(r[3]), gateway=r[4],
                         batch_seq=r[5])
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("gateways", "batches", "devices", "telemetry", "configs"):
            out[table] = int(self._one(f"SELECT COUNT(*) FROM {table}")[0])
        return out

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
        cur = self._conn.execute(
            "INSERT INTO configs (device, version, issued_ms, settings, envelope)"
            " VALUES (?, ?, ?, ?, ?)",
            (device_id, version, issued_ms, _dumps(settings), envelope),
        )
        if cur.lastrowid is None:
            raise RuntimeError("no revision assigned")
        return int(cur.lastrowid)

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

    def max_config_revision(self) -> int:
        return int(self._one("SELECT COALESCE(MAX(revision), 0) FROM configs")[0])

    def desired_versions(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT device, MAX(version) FROM configs GROUP BY device")
        return {r[0]: int(r[1]) for r in rows}
