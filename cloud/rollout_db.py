"""The SQL of updates (cloud.rollout_store.RolloutStore): bundles, rollouts, waves and their
devices. A mixin of cloud.db.SqliteStore, so PostgreSQL's store runs it too; the statements
keep to what both accept, like the rest of cloud.db.

The offers stamp (a counter in `stamps`) moves in the same transaction as every change that
may change some gateway's offers: a rollout planned, a wave started, a rollout's state, and
(through `touch_offers`, called by cloud.services.progress) a device's word entering or leaving
the offered set, or a device of a rollout assigned to a gateway. The gateways' long-poll reads that one row instead of the rollout tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloud.rollout_store import BundleRow, RolloutDeviceRow, RolloutRow, WaveRow
from protocol import ota

if TYPE_CHECKING:
    from cloud.db import Connection

_BUNDLE_COLS = ("key, offer_id, kind, base, product, version, min_version, files, carried, size,"
                " sha256, created_ms, created_by, manifest_size")
_ROLLOUT_COLS = ("n, bundle, product, version, offer_id, target, waves, soak_s,"
                 " failure_threshold, deadline_s, heap_ratio, state, reason, accepted, skipped,"
                 " created_ms, created_by, updated_ms")
_WAVE_COLS = "rollout, wave, percent, size, started_ms"
# The columns that change after a device row is written, in RolloutDeviceRow's field order.
_PROGRESS = ("word", "since_ms", "progress", "reason", "version", "word_t", "heard_ms",
             "offered_ms", "baseline_heap", "committed_ms", "committed_t", "commit_resets",
             "heap_min", "beat_ms", "reset_cause")
_DEVICE_COLS = "rollout, device, wave, position, " + ", ".join(_PROGRESS)
_FINAL = "(" + ", ".join(f"'{w}'" for w in ota.FINAL) + ")"
_OFFERABLE = "(" + ", ".join(f"'{w}'" for w in (ota.PENDING, ota.OFFERED, ota.DOWNLOADING,
                                                   ota.VERIFIED, ota.INSTALLING,
                                                   ota.REBOOTING)) + ")"
_JUDGED = "(" + ", ".join(f"'{w}'" for w in (ota.DOWNLOADING, ota.VERIFIED, ota.INSTALLING,
                                                ota.REBOOTING, ota.COMMITTED)) + ")"
_IN_CHUNK = 500  # ids per IN (...) list


def _bundle(r: Sequence[Any]) -> BundleRow:
    return BundleRow(key=r[0], offer_id=r[1], kind=r[2], base=r[3], product=r[4], version=r[5],
                     min_version=r[6], files=r[7], carried=r[8], size=r[9], sha256=r[10],
                     created_ms=r[11], created_by=r[12], manifest_size=r[13])


def _rollout(r: Sequence[Any]) -> RolloutRow:
    return RolloutRow(
        n=int(r[0]), bundle=r[1], product=r[2], version=r[3], offer_id=r[4],
        target=json.loads(r[5]), waves=json.loads(r[6]), soak_s=r[7],
        failure_threshold=float(r[8]), deadline_s=r[9], heap_ratio=float(r[10]), state=r[11],
        reason=r[12], accepted=json.loads(r[13]), skipped=json.loads(r[14]), created_ms=r[15],
        created_by=r[16], updated_ms=r[17])


def _device(r: Sequence[Any]) -> RolloutDeviceRow:
    return RolloutDeviceRow(int(r[0]), r[1], r[2], r[3],
                            **dict(zip(_PROGRESS, r[4:4 + len(_PROGRESS)], strict=True)))


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class RolloutSql:
    """RolloutStore over SqliteStore's connection (`?` placeholders, rows as tuples)."""

    _conn: Connection

    # bundles ------------------------------------------------------------------------------

    def insert_bundle(self, row: BundleRow, manifest: bytes, data: bytes) -> None:
        self._conn.execute(
            f"INSERT INTO bundles ({_BUNDLE_COLS.replace(', manifest_size', '')}, manifest,"
            " data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.key, row.offer_id, row.kind, row.base, row.product, row.version,
             row.min_version, row.files, row.carried, row.size, row.sha256, row.created_ms,
             row.created_by, manifest, data))

    def _bundles(self, where: str, params: Sequence[Any]) -> list[BundleRow]:
        cols = _BUNDLE_COLS.replace("manifest_size", "LENGTH(manifest)")
        rows = self._conn.execute(f"SELECT {cols} FROM bundles {where}", params)
        return [_bundle(r) for r in rows]

    def get_bundle(self, key: str) -> BundleRow | None:
        found = self._bundles("WHERE key = ?", (key,))
        return found[0] if found else None

    def list_bundles(self) -> list[BundleRow]:
        return self._bundles("ORDER BY created_ms DESC, key", ())

    def _blob(self, column: str, key: str) -> bytes | None:
        row = self._conn.execute(f"SELECT {column} FROM bundles WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def bundle_data(self, key: str) -> bytes | None:
        return self._blob("data", key)

    def bundle_manifest(self, key: str) -> bytes | None:
        return self._blob("manifest", key)

    # rollouts -----------------------------------------------------------------------------

    def insert_rollout(self, row: RolloutRow) -> int:
        r = self._conn.execute(
            f"INSERT INTO rollouts ({_ROLLOUT_COLS.replace('n, ', '', 1)}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING n",
            (row.bundle, row.product, row.version, row.offer_id, _text(row.target),
             _text(row.waves), row.soak_s, row.failure_threshold, row.deadline_s,
             row.heap_ratio, row.state, row.reason, _text(row.accepted), _text(row.skipped),
             row.created_ms, row.created_by, row.updated_ms)).fetchall()
        return int(r[0][0])

    def get_rollout(self, n: int) -> RolloutRow | None:
        r = self._conn.execute(f"SELECT {_ROLLOUT_COLS} FROM rollouts WHERE n = ?",
                               (n,)).fetchone()
        return None if r is None else _rollout(r)

    def list_rollouts(self) -> list[RolloutRow]:
        rows = self._conn.execute(f"SELECT {_ROLLOUT_COLS} FROM rollouts ORDER BY n DESC")
        return [_rollout(r) for r in rows]

    def open_rollouts(self) -> list[RolloutRow]:
        rows = self._conn.execute(
            f"SELECT {_ROLLOUT_COLS} FROM rollouts r WHERE state IN ('running', 'paused',"
            " 'auto_paused') OR (state = 'completed' AND EXISTS (SELECT 1 FROM rollout_devices"
            f" d WHERE d.rollout = r.n AND d.word IN {_JUDGED})) ORDER BY n")
        return [_rollout(r) for r in rows]

    def save_rollout_state(self, row: RolloutRow) -> None:
        self._conn.execute(
            "UPDATE rollouts SET state = ?, reason = ?, accepted = ?, updated_ms = ? WHERE n = ?",
            (row.state, row.reason, _text(row.accepted), row.updated_ms, row.n))
        self.touch_offers()

    # the offers stamp ---------------------------------------------------------------------

    def touch_offers(self) -> None:
        self._conn.execute("UPDATE stamps SET n = n + 1 WHERE name = 'offers'")

    def offers_stamp(self) -> int:
        row = self._conn.execute("SELECT n FROM stamps WHERE name = 'offers'").fetchone()
        return 0 if row is None else int(row[0])

    def insert_waves(self, rows: Sequence[WaveRow]) -> None:
        self._conn.executemany(
            f"INSERT INTO rollout_waves ({_WAVE_COLS}) VALUES (?, ?, ?, ?, ?)",
            [(w.rollout, w.wave, w.percent, w.size, w.started_ms) for w in rows])

    def waves(self, n: int) -> list[WaveRow]:
        rows = self._conn.execute(
            f"SELECT {_WAVE_COLS} FROM rollout_waves WHERE rollout = ? ORDER BY wave", (n,))
        return [WaveRow(int(r[0]), r[1], float(r[2]), r[3], r[4]) for r in rows]

    def start_wave(self, n: int, wave: int, now_ms: int) -> None:
        self._conn.execute(
            "UPDATE rollout_waves SET started_ms = ? WHERE rollout = ? AND wave = ?"
            " AND started_ms IS NULL", (now_ms, n, wave))
        self.touch_offers()

    def insert_rollout_devices(self, rows: Sequence[RolloutDeviceRow]) -> None:
        places = ", ".join("?" * (4 + len(_PROGRESS)))
        self._conn.executemany(
            f"INSERT INTO rollout_devices ({_DEVICE_COLS}) VALUES ({places})",
            [(r.rollout, r.device, r.wave, r.position,
              *(getattr(r, c) for c in _PROGRESS)) for r in rows])
        self.touch_offers()

    def rollout_devices(self, n: int) -> list[RolloutDeviceRow]:
        rows = self._conn.execute(
            f"SELECT {_DEVICE_COLS} FROM rollout_devices WHERE rollout = ? ORDER BY position",
            (n,))
        return [_device(r) for r in rows]

    def save_rollout_devices(self, rows: Sequence[RolloutDeviceRow]) -> None:
        if not rows:
            return
        sets = ", ".join(f"{c} = ?" for c in _PROGRESS)
        self._conn.executemany(
            f"UPDATE rollout_devices SET {sets} WHERE rollout = ? AND device = ?",
            [(*(getattr(r, c) for c in _PROGRESS), r.rollout, r.device) for r in rows])

    def held_devices(self, device_ids: Sequence[str]) -> list[RolloutDeviceRow]:
        out: list[RolloutDeviceRow] = []
        ids = sorted(set(device_ids))
        cols = ", ".join("d." + c for c in _DEVICE_COLS.split(", "))
        for at in range(0, len(ids), _IN_CHUNK):
            chunk = ids[at:at + _IN_CHUNK]
            rows = self._conn.execute(
                f"SELECT {cols} FROM rollout_devices d JOIN rollouts r ON r.n = d.rollout"
                f" WHERE d.device IN ({', '.join('?' * len(chunk))})"
                f" AND d.word NOT IN {_FINAL} AND r.state <> 'aborted'"
                " ORDER BY d.rollout, d.position", chunk)
            out += [_device(r) for r in rows]
        return out

    def gateway_rollout_devices(self, gateway_id: str) -> list[tuple[RolloutDeviceRow, str]]:
        cols = ", ".join("d." + c for c in _DEVICE_COLS.split(", "))
        rows = self._conn.execute(
            f"SELECT {cols}, r.state FROM rollout_devices d"
            " JOIN rollouts r ON r.n = d.rollout"
            " JOIN rollout_waves w ON w.rollout = d.rollout AND w.wave = d.wave"
            " JOIN devices v ON v.id = d.device"
            " WHERE v.gateway = ? AND r.state <> 'aborted' AND w.started_ms IS NOT NULL"
            f" AND d.word IN {_OFFERABLE} ORDER BY d.rollout DESC, d.position",
            (gateway_id,))
        return [(_device(r), str(r[-1])) for r in rows]

    def has_records_after(self, device_id: str, t: int) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM telemetry_chunks WHERE device = ? AND t_hi > ? LIMIT 1", (device_id, t)
        ).fetchone()
        return row is not None
