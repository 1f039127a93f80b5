"""The spool's budget: how many bytes of sealed batches, and how old, the gateway keeps for a
cloud it cannot reach.

Over budget, the oldest batches are dropped whole, never a record out of a batch, and never
silently: the dropped run first..last is replaced in the spool, at `last`, by one signed drop
(protocol.batch.Gap with kind "drop": its prev is what batch `first` chained to, its digest is
batch `last`'s), which the uplink sends in their place. The cloud records it as a gap in this
gateway's chain and shows it; the next batch chains to `last`'s digest as if nothing happened,
so the chain stays verifiable across the hole. A drop at the head of the spool is merged with
the next run dropped, so the spool holds one drop however long the outage (a drop in place of
many small batches must not itself grow without bound). Drops are counted in the store (they
survive a restart) and shown in the status.

A gap the cloud asked for (a refused batch, kind "gap") is never dropped: it stands for a
dead-lettered batch a technician can still see. Runs of batches on either side of it are
dropped separately.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.store import KIND_BATCH, KIND_DROP, KIND_GAP, SpooledBatch, SpoolRow, Store
from protocol.batch import GAP_DROPPED, MAX_REASON_CHARS, Gap, seal_gap

log = logging.getLogger("fleetloop.gateway.spool_budget")

_PAGE = 500  # spool rows read at a time while choosing what to drop


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Budget:
    max_bytes: int
    max_age_s: float


@dataclass(frozen=True)
class Dropped:
    """What one drop covered."""

    first: int
    last: int
    batches: int  # batches of data dropped now (an earlier drop merged in is not counted again)
    records: int
    states: int
    reason: str


class SpoolBudget:
    def __init__(self, store: Store, gateway_id: str, key: Ed25519PrivateKey, budget: Budget,
                 interval_s: float = 1.0, on_dropped: Callable[[], None] = lambda: None,
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._gateway_id = gateway_id
        self._key = key
        self._budget = budget
        self._interval_s = interval_s
        self._on_dropped = on_dropped
        self._clock_ms = clock_ms

    @property
    def budget(self) -> Budget:
        return self._budget

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.enforce()
            stop.wait(self._interval_s)

    def enforce(self) -> list[Dropped]:
        """Drop the oldest batches until the spool is within its budget; what was dropped."""
        done: list[Dropped] = []
        while True:
            used, oldest_ms = self._store.spool_usage()
            now = self._clock_ms()
            excess = used - self._budget.max_bytes
            too_old_ms = now - int(self._budget.max_age_s * 1000)
            if excess <= 0 and (oldest_ms is None or oldest_ms >= too_old_ms):
                break
            dropped = self._drop_one_run(excess, too_old_ms, used, now)
            if dropped is None:
                break  # nothing droppable (only refused gaps and drops left)
            done.append(dropped)
        if done:
            self._on_dropped()
        return done

    def _drop_one_run(self, excess: int, too_old_ms: int, used: int,
                      now: int) -> Dropped | None:
        """Drop the oldest run of consecutive batches (and a drop before them) that frees
        `excess` bytes or ends at the first batch young enough; None if none can go."""
        run: list[SpoolRow] = []
        freed = 0
        after = 0
        while True:
            rows = self._store.spool_rows(after, _PAGE)
            if not rows:
                break
            for row in rows:
                after = row.seq
                enough = freed >= excess and row.created_ms >= too_old_ms
                if row.kind == KIND_GAP or (enough and row.kind == KIND_BATCH):
                    if any(r.kind == KIND_BATCH for r in run):
                        return self._replace(run, used, excess, now)
                    if row.kind == KIND_BATCH:
                        return None  # within budget once the run before was dropped
                    run, freed = [], 0  # a refused gap: a new run starts after it
                    continue
                run.append(row)  # rows in seq order are the chain's order: one run
                if row.kind == KIND_BATCH:  # a drop merged in is replaced by a new one
                    freed += row.bytes
        if any(r.kind == KIND_BATCH for r in run):
            return self._replace(run, used, excess, now)
        return None

    def _replace(self, run: list[SpoolRow], used: int, excess: int, now: int) -> Dropped:
        head, last = run[0], run[-1]
        first, prev = head.seq, head.prev
        batches = sum(1 for r in run if r.kind == KIND_BATCH)
        records, states = sum(r.records for r in run), sum(r.states for r in run)
        if head.kind == KIND_DROP:  # merge: the earlier drop's range and prev carry over
            body = self._store.spool_body(head.seq)
            if body is not None:
                first = int(json.loads(body)["first"])
        why = (f"over {self._budget.max_bytes} bytes ({used} spooled)" if excess > 0
               else f"older than {self._budget.max_age_s:g} s")
        reason = (f"spool budget: dropped unsent batches {first}..{last.seq} ({records} records)"
                  f", {why}")[:MAX_REASON_CHARS]
        gap = Gap(gateway=self._gateway_id, seq=last.seq, prev=prev, digest=last.digest,
                  records=records, states=states, status=0, reason=reason, created_ms=now,
                  kind=GAP_DROPPED, first=first)
        body, signature = seal_gap(gap, self._key)
        new_records = sum(r.records for r in run if r.kind == KIND_BATCH)
        self._store.replace_with_drop(head.seq, last.seq, SpooledBatch(
            seq=last.seq, digest=last.digest, body=body, signature=signature, records=records,
            states=states, created_ms=now, kind=KIND_DROP, prev=prev), batches, new_records)
        log.error("%s (the cloud is told; the chain goes on)", reason)
        return Dropped(first, last.seq, batches, new_records,
                       sum(r.states for r in run if r.kind == KIND_BATCH), reason)
