"""The database schema and its versions: the DDL of version 1 and one migration per version since.

A fresh database gets version 1's tables and then every migration, exactly like an existing
one, so the migrations are exercised on every start of a new cloud, not only on upgrades.
`PRAGMA user_version` holds the version. The statements stay within what PostgreSQL also
accepts (CREATE TABLE/INDEX IF NOT EXISTS, ALTER TABLE ADD COLUMN); the SQLite-only bits are
AUTOINCREMENT (PostgreSQL: BIGINT GENERATED ALWAYS AS IDENTITY) and BLOB (BYTEA).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

_V1 = """
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

# Version 2: per-record quarantine, gaps in a gateway's chain. `devices.gateway` keeps its
# column but changes meaning: the assigned gateway (first to deliver, or set by an operator)
# instead of the latest to deliver; an existing value is taken as the assignment.
_V2 = [
    "ALTER TABLE batches ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE batches ADD COLUMN gap_status INTEGER",
    "ALTER TABLE batches ADD COLUMN gap_reason TEXT",
    """CREATE TABLE IF NOT EXISTS quarantine (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        device      TEXT,
        seq         INTEGER,
        gateway     TEXT NOT NULL,
        batch_seq   INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        reason      TEXT NOT NULL,
        body        TEXT NOT NULL,
        received_ms INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS quarantine_device ON quarantine (device, id)",
    "CREATE INDEX IF NOT EXISTS batches_gaps ON batches (gateway, gap_status)",
]

# version -> statements that bring version - 1 up to it
MIGRATIONS: dict[int, list[str]] = {2: _V2}


def create_v1(conn: sqlite3.Connection) -> None:
    """Version 1's tables (a fresh file starts here, then migrates)."""
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)


def migrate(conn: sqlite3.Connection, version: int) -> int:
    """Bring a database at `version` (0 = empty) up to SCHEMA_VERSION inside the caller's
    transaction; returns the new version."""
    if version < 1:
        create_v1(conn)
        version = 1
    while version < SCHEMA_VERSION:
        version += 1
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return version
