"""The SQL of the telemetry (store.Store's telemetry methods), a mixin of cloud.db.SqliteStore,
so PostgreSQL's store runs it too.

Records are stored in chunks: one row holds a run of one device's records of one incarnation
that arrived in one batch, as a JSON array of `[seq, t, m]` (a metric record) or
`[seq, t, {}, c]` (a consent record), sorted by seq, with the run's seq and time bounds in
columns. A batch of 2,000 records from a handful of devices is a handful of rows: one row per
record cost three B-tree inserts and a JSON text each, and was the largest part of ingest.

What keeps the reads cheap and correct:
- a chunk spans at most SPAN seqs (seq_hi - seq_lo < SPAN), so the records with seqs in
  [low, high] lie in chunks with seq_hi in [low, high + SPAN - 1]: one range of the index
  (device, incarnation, seq_hi), never a scan of the device's history, and for new records
  (past the end of it) an empty one;
- a chunk holds at most CHUNK_RECORDS records, so reading one record (the engine KPIs bisect
  the history one record at a time) decodes at most that many;
- the time index (device, t_hi, t_lo) finds the chunks that reach into a time range
  (t_hi >= from) and leaves out those that start after it (t_lo < to) without reading rows;
- a record's identity is stored once: every insert first looks up the identities of its seq
  range (one probe, nothing to decode when the range is new) and leaves out those stored,
  as the per-record primary key did. Writers are serialised (store.Store.transaction), so no
  two writers can store one identity at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from operator import contains, itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from cloud.store import Bucket, TelemetryRow, TelemetryValues

if TYPE_CHECKING:
    from cloud.db import Connection

SPAN = 4096  # seqs one chunk may span
CHUNK_RECORDS = 512  # records one chunk may hold

_COLS = "device, incarnation, seq_lo, seq_hi, t_lo, t_hi, n, gateway, batch_seq, body"
# The chunks that may hold seqs in [low, high], as (low, high + SPAN - 1, high): their seq_hi
# is at least low, and below high + SPAN because they start at or before high.
_HOLDING = "seq_hi BETWEEN ? AND ? AND seq_lo <= ?"

# A stored record as the chunk's JSON holds it, decoded: [seq, t, m] or [seq, t, m, c] (a
# tuple on its way in: the same JSON).
Entry = Sequence[Any]


def _row(device: str, incarnation: int, gateway: str, batch_seq: int, e: Entry) -> TelemetryRow:
    return TelemetryRow(device=device, incarnation=incarnation, seq=e[0], t=e[1], m=e[2],
                        gateway=gateway, batch_seq=batch_seq,
                        consent=e[3] if len(e) > 3 else None)


def _runs(entries: list[Entry]) -> Iterator[list[Entry]]:
    """Sorted entries cut into chunks: at most CHUNK_RECORDS each, spanning fewer than SPAN."""
    if not entries:
        return
    if len(entries) <= CHUNK_RECORDS and entries[-1][0] - entries[0][0] < SPAN:
        yield entries  # the usual case: a device's records of one batch
        return
    start = 0
    for n in range(1, len(entries) + 1):
        if n == len(entries) or n - start == CHUNK_RECORDS \
                or entries[n][0] - entries[start][0] >= SPAN:
            yield entries[start:n]
            start = n


def _encode(entries: Sequence[Entry]) -> str:
    # orjson: several times the standard encoder's speed on a chunk; the values read back are
    # the same (every value stored is parsed JSON within protocol.bounds).
    return orjson.dumps(entries, option=orjson.OPT_SORT_KEYS).decode()


def _numeric(value: object) -> float | None:
    """A metric value as the series read it: numbers and booleans (as 0/1), nothing else."""
    kind = type(value)
    if kind is int or kind is float or kind is bool:
        return float(value)  # type: ignore[arg-type]
    return None


class TelemetrySql:
    _conn: Connection

    # writing ------------------------------------------------------------------------------

    def insert_telemetry(self, rows: Sequence[TelemetryRow]) -> int:
        return self.insert_telemetry_values([
            (r.device, r.incarnation, r.seq, r.t, r.m, r.gateway, r.batch_seq, r.consent)
            for r in rows
        ])

    def insert_telemetry_values(self, rows: Sequence[TelemetryValues]) -> int:
        groups: dict[tuple[str, int, str, int], list[Entry]] = {}
        for device, incarnation, seq, t, m, gateway, batch_seq, consent in rows:
            entry = [seq, t, m] if consent is None else [seq, t, m, consent]
            groups.setdefault((device, incarnation, gateway, batch_seq), []).append(entry)
        return sum(self._insert_entries(device, incarnation, gateway, batch_seq, entries)
                   for (device, incarnation, gateway, batch_seq), entries in groups.items())

    def insert_records(
        self, device_id: str, gateway: str, batch_seq: int, records: Sequence[dict[str, Any]]
    ) -> int:
        if not records:
            return 0
        incarnations = set(map(dict.get, records, repeat("i"), repeat(0)))
        groups: dict[int, Sequence[dict[str, Any]]] = {}
        if len(incarnations) == 1:
            groups[incarnations.pop()] = records
        else:
            by_incarnation: dict[int, list[dict[str, Any]]] = {}
            for r in records:
                by_incarnation.setdefault(r.get("i", 0), []).append(r)
            groups.update(by_incarnation)
        inserted = 0
        for incarnation, recs in groups.items():
            entries: list[Entry]
            if any(map(contains, recs, repeat("c"))):
                entries = [[r["s"], r["t"], r.get("m", _NONE)] if "c" not in r
                           else [r["s"], r["t"], {}, r["c"]] for r in recs]
            else:  # metric records only, the usual batch: made in C (map, zip), no loop here
                entries = list(zip(map(_seq_of, recs), map(_time_of, recs),
                                   map(dict.get, recs, repeat("m"), repeat(_NONE)), strict=True))
            inserted += self._insert_entries(device_id, incarnation, gateway, batch_seq, entries)
        return inserted

    def _insert_entries(self, device: str, incarnation: int, gateway: str, batch_seq: int,
                        entries: list[Entry]) -> int:
        """Store the entries whose identity is new (the first of a seq given twice), in chunks;
        how many were stored."""
        entries.sort(key=_seq)  # stable: of one seq given twice, the first stays first
        fresh = self._fresh(device, incarnation, entries)
        for run in _runs(fresh):
            self._insert_chunk(device, incarnation, gateway, batch_seq, run)
        return len(fresh)

    def _fresh(self, device: str, incarnation: int, entries: list[Entry]) -> list[Entry]:
        """The sorted entries whose identity is not stored yet, each seq once (the first)."""
        if not entries:
            return entries
        stored = self._stored_seqs(device, incarnation, entries[0][0], entries[-1][0])
        if not stored and len(set(map(_seq, entries))) == len(entries):
            return entries  # the usual case: new records, each seq once
        out: list[Entry] = []
        last = None
        for e in entries:
            seq = e[0]
            if seq != last and seq not in stored:
                out.append(e)
            last = seq
        return out

    def _stored_seqs(self, device: str, incarnation: int, low: int, high: int) -> set[int]:
        return {e[0] for _, entries in self._chunks_between(device, incarnation, low, high)
                for e in entries if low <= e[0] <= high}

    def _insert_chunk(self, device: str, incarnation: int, gateway: str, batch_seq: int,
                      run: list[Entry]) -> None:
        times = list(map(_time, run))
        self._conn.execute(
            f"INSERT INTO telemetry_chunks ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device, incarnation, run[0][0], run[-1][0], min(times), max(times), len(run),
             gateway, batch_seq, _encode(run)),
        )

    def set_metrics(
        self, device_id: str, updates: Sequence[tuple[int, int, dict[str, Any]]]
    ) -> None:
        by_incarnation: dict[int, dict[int, dict[str, Any]]] = {}
        for incarnation, seq, m in updates:
            by_incarnation.setdefault(incarnation, {})[seq] = m
        for incarnation, metrics in by_incarnation.items():
            chunks = self._chunks_between(device_id, incarnation, min(metrics), max(metrics))
            for seq_lo, entries in chunks:
                changed = False
                for e in entries:
                    new = metrics.get(e[0])
                    if new is not None:
                        e[2] = new
                        changed = True
                if changed:
                    self._conn.execute(
                        "UPDATE telemetry_chunks SET body = ?"
                        " WHERE device = ? AND incarnation = ? AND seq_lo = ?",
                        (_encode(entries), device_id, incarnation, seq_lo),
                    )

    # reading ------------------------------------------------------------------------------

    def _chunks_between(
        self, device: str, incarnation: int, low: int, high: int
    ) -> list[tuple[int, list[list[Any]]]]:
        """(seq_lo, entries) of the chunks that may hold seqs in [low, high]."""
        return [
            (r[0], orjson.loads(r[1]))
            for r in self._conn.execute(
                "SELECT seq_lo, body FROM telemetry_chunks"
                f" WHERE device = ? AND incarnation = ? AND {_HOLDING}",
                (device, incarnation, low, high + SPAN - 1, high),
            )
        ]

    def telemetry(
        self, device_id: str, incarnation: int, after_seq: int, limit: int
    ) -> list[TelemetryRow]:
        if limit <= 0:
            return []
        out: list[TelemetryRow] = []
        # Chunks in seq_lo order; one that starts past the limit-th record found cannot hold
        # an earlier one, so the walk stops there.
        for r in self._conn.execute(
            f"SELECT {_COLS} FROM telemetry_chunks WHERE device = ? AND incarnation = ?"
            " AND seq_lo > ? AND seq_hi > ? ORDER BY seq_lo",
            (device_id, incarnation, after_seq - SPAN, after_seq),
        ):
            if len(out) >= limit and r[2] > out[limit - 1].seq:
                break
            out += [_row(r[0], r[1], r[7], r[8], e) for e in orjson.loads(r[9])
                    if e[0] > after_seq]
            out.sort(key=_row_seq)
        return out[:limit]

    def telemetry_between(
        self, device_id: str, incarnation: int, low: int, high: int
    ) -> list[TelemetryRow]:
        out = [
            _row(r[0], r[1], r[7], r[8], e)
            for r in self._conn.execute(
                f"SELECT {_COLS} FROM telemetry_chunks WHERE device = ? AND incarnation = ?"
                f" AND {_HOLDING}",
                (device_id, incarnation, low, high + SPAN - 1, high),
            )
            for e in orjson.loads(r[9]) if low <= e[0] <= high
        ]
        out.sort(key=_row_seq)
        return out

    def metric_rows(self, device_id: str) -> list[TelemetryRow]:
        return [
            _row(r[0], r[1], r[7], r[8], e)
            for r in self._conn.execute(
                f"SELECT {_COLS} FROM telemetry_chunks WHERE device = ?"
                " ORDER BY incarnation, seq_lo",
                (device_id,),
            )
            for e in orjson.loads(r[9]) if len(e) == 3
        ]

    def telemetry_count(self) -> int:
        row = self._conn.execute("SELECT COALESCE(SUM(n), 0) FROM telemetry_chunks").fetchone()
        return int(row[0])

    def metric_buckets(
        self, device_id: str, metric: str, from_ms: int, to_ms: int, bucket_ms: int
    ) -> list[Bucket]:
        """The range's chunks (time index), their records' values of `metric` bucketed here:
        numbers as they are, booleans as 0/1, any other value or a missing one left out."""
        groups: dict[int, list[float]] = {}
        for (body,) in self._conn.execute(
            "SELECT body FROM telemetry_chunks WHERE device = ? AND t_hi >= ? AND t_lo < ?",
            (device_id, from_ms, to_ms),
        ):
            for e in orjson.loads(body):
                t = e[1]
                if from_ms <= t < to_ms and len(e) == 3:
                    value = _numeric(e[2].get(metric))
                    if value is not None:
                        index = (t - from_ms) // bucket_ms
                        group = groups.get(index)
                        if group is None:
                            groups[index] = [value]
                        else:
                            group.append(value)
        return [
            Bucket(start_ms=from_ms + index * bucket_ms, count=len(values), min=min(values),
                   max=max(values), mean=sum(values) / len(values))
            for index, values in sorted(groups.items())
        ]


_seq, _time = itemgetter(0), itemgetter(1)
_seq_of, _time_of = itemgetter("s"), itemgetter("t")  # of a record
_NONE: dict[str, Any] = {}  # a record without metrics; never changed (entries are rebuilt)


def _row_seq(r: TelemetryRow) -> int:
    return r.seq

