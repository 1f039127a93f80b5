"""The SQL of the gateways' aggregates (cloud.aggregate_store.AggregateStore). A mixin of
cloud.db.SqliteStore, so PostgreSQL's store runs it too; the statements keep to what both
accept, like the rest of cloud.db."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloud.aggregate_store import AggregateRow, ModeRow, RawKept
from protocol.aggregate import RAW_LOCAL

if TYPE_CHECKING:
    from cloud.db import Connection

_COLS = ("device, incarnation, start_ms, first_seq, last_seq, window_s, n, product, raw, m,"
         " gateway, batch_seq, received_ms")


def _row(r: Sequence[Any]) -> AggregateRow:
    return AggregateRow(device=r[0], incarnation=r[1], start_ms=r[2], first_seq=r[3],
                        last_seq=r[4], window_s=r[5], n=r[6], product=r[7], raw=r[8],
                        m=json.loads(r[9]), gateway=r[10], batch_seq=r[11], received_ms=r[12])


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class AggregateSql:
    _conn: Connection

    def aggregation_modes(self) -> list[ModeRow]:
        return [ModeRow(*r) for r in self._conn.execute(
            "SELECT product, mode, updated_ms, updated_by FROM aggregation ORDER BY product")]

    def set_aggregation_mode(self, row: ModeRow) -> None:
        self._conn.execute(
            "INSERT INTO aggregation (product, mode, updated_ms, updated_by) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (product) DO UPDATE SET mode = excluded.mode,"
            " updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
            (row.product, row.mode, row.updated_ms, row.updated_by))

    def insert_aggregates(self, rows: Sequence[AggregateRow]) -> int:
        if not rows:
            return 0
        cur = self._conn.executemany(
            f"INSERT INTO aggregates ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (device, incarnation, start_ms, first_seq) DO NOTHING",
            [(r.device, r.incarnation, r.start_ms, r.first_seq, r.last_seq, r.window_s, r.n,
              r.product, r.raw, _dumps(r.m), r.gateway, r.batch_seq, r.received_ms)
             for r in rows])
        return max(cur.rowcount, 0)

    def aggregates(self, device_id: str, from_ms: int, to_ms: int,
                   limit: int) -> list[AggregateRow]:
        return [_row(r) for r in self._conn.execute(
            f"SELECT {_COLS} FROM aggregates WHERE device = ? AND start_ms >= ? AND start_ms < ?"
            " ORDER BY start_ms, incarnation, first_seq LIMIT ?",
            (device_id, from_ms, to_ms, limit))]

    def raw_kept(self, device_id: str) -> RawKept:
        records, windows = self._conn.execute(
            "SELECT coalesce(sum(n), 0), count(*) FROM aggregates WHERE device = ? AND raw = ?",
            (device_id, RAW_LOCAL)).fetchone()
        gateways = tuple(r[0] for r in self._conn.execute(
            "SELECT DISTINCT gateway FROM aggregates WHERE device = ? AND raw = ?"
            " ORDER BY gateway", (device_id, RAW_LOCAL)))
        return RawKept(int(records), int(windows), gateways)

    def aggregate_metric_rows(self, device_id: str) -> list[AggregateRow]:
        return [_row(r) for r in self._conn.execute(
            f"SELECT {_COLS} FROM aggregates WHERE device = ?", (device_id,))]

    def set_aggregate_metrics(
        self, device_id: str, updates: Sequence[tuple[int, int, int, dict[str, Any]]]
    ) -> None:
        if not updates:
            return
        self._conn.executemany(
            "UPDATE aggregates SET m = ? WHERE device = ? AND incarnation = ? AND start_ms = ?"
            " AND first_seq = ?",
            [(_dumps(m), device_id, inc, start, first) for inc, start, first, m in updates])
