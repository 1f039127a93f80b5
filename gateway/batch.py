"""Inbox -> sealed batch in the spool: take the oldest records and states, build
protocol.batch.Batch(seq = head + 1, prev = head digest), sign it with the gateway's Ed25519 key,
then in one transaction spool it, delete what it took and move the chain head. A crash at any
point leaves either the records in the inbox or the batch in the spool, never neither or both.

With an Aggregator (gateway.aggregate), the records it took are also folded into their
product's windows in that same transaction, and the windows that closed travel in the batch
as aggregate records (protocol.batch version 3); records of a product whose raw records stay
local are kept at the gateway instead of being batched. A batch is sealed only when it carries
something: rows that were all kept locally and closed no window move out of the inbox without
one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.aggregate import Aggregator, Plan
from gateway.errors import GatewayError
from gateway.store import ChainHead, SpooledBatch, Store
from protocol import batch as batch_codec

log = logging.getLogger("fleetloop.gateway.batch")


class BatchChainError(GatewayError):
    """The chain head changed under the batcher (two writers on one database)."""


@dataclass(frozen=True)
class SealedInfo:
    seq: int  # 0 when the rows taken needed no batch (all kept locally, no window closed)
    digest: str
    records: int  # raw records in the batch
    states: int
    aggregates: int = 0
    taken: int = 0  # inbox and state rows this step moved out (sent, folded or kept locally)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Batcher:
    """Seals batches of up to `max_records` when that many wait, or every `interval_s`."""

    def __init__(self, store: Store, gateway_id: str, key: Ed25519PrivateKey, max_records: int,
                 interval_s: float, on_sealed: Callable[[], None] = lambda: None,
                 clock_ms: Callable[[], int] = _now_ms,
                 aggregator: Aggregator | None = None) -> None:
        self._store = store
        self._aggregator = aggregator
        self._gateway_id = gateway_id
        self._key = key
        self._max = max_records
        self._interval_s = interval_s
        self._on_sealed = on_sealed
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._waiting = 0
        self._wake = threading.Event()
        self.sealed_batches = 0
        self.sealed_records = 0

    def notify(self, stored: int) -> None:
        """Ingest calls this after each commit; wakes the batcher once a full batch waits."""
        with self._lock:
            self._waiting += stored
            if self._waiting >= self._max:
                self._wake.set()

    def wake(self) -> None:
        """Interrupt the wait (used when stopping)."""
        self._wake.set()

    def seal_next(self) -> SealedInfo | None:
        """Seal one batch from the oldest waiting records and states; None if nothing waits.

        Reading and signing happen before the write transaction, so ingest commits are not held
        up by the signature. That is safe because this batcher is the only one that deletes
        from the inbox or moves the chain head (one batcher per database), and inbox ids only
        grow: the rows read are exactly the rows with id <= the last id read. The write
        (spool insert + inbox delete + new head) is one transaction.
        """
        rows = self._store.take_inbox(self._max)
        state_rows = self._store.take_states(self._max - len(rows))
        now = self._clock_ms()
        plan = (self._aggregator.plan(rows, now, self._max - len(rows) - len(state_rows))
                if self._aggregator is not None else None)
        # The devices' exact bytes (checked as UTF-8 JSON at ingest): the cloud verifies each
        # device's tag over them (protocol.batch version 2).
        records = [bytes(p) for _, p in rows] if plan is None else plan.send
        aggregates = () if plan is None else tuple(plan.aggregates)
        if not rows and not state_rows and not aggregates:
            return None
        head = self._store.head()
        sealed = None
        if records or state_rows or aggregates:
            batch = batch_codec.Batch(
                gateway=self._gateway_id,
                seq=head.seq + 1,
                prev=head.digest,
                created_ms=now,
                records=tuple(p.decode() for p in records),
                states=tuple(bytes(p).decode() for _, p in state_rows),
                version=batch_codec.VERSION_AGGREGATES if aggregates else batch_codec.VERSION,
                aggregates=aggregates,
            )
            sealed = batch_codec.seal(batch, self._key)
        with self._store.transaction() as db:
            if self._store.head() != head:
                raise BatchChainError("the chain head moved while sealing: is a second gateway "
                                      "process using this database?")
            if sealed is not None:
                self._store.add_to_spool(SpooledBatch(
                    seq=sealed.seq, digest=sealed.digest, body=sealed.body,
                    signature=sealed.signature, records=len(records) + len(aggregates),
                    states=len(state_rows), created_ms=now, prev=head.digest))
            if rows:
                self._store.delete_inbox_through(rows[-1][0])
            if state_rows:
                self._store.delete_states_through(state_rows[-1][0])
            if sealed is not None:
                self._store.set_head(ChainHead(sealed.seq, sealed.digest))
            if plan is not None and self._aggregator is not None:
                self._aggregator.write(db, plan, now)
        self._committed(plan)
        taken = len(rows) + len(state_rows)
        if sealed is None:
            return SealedInfo(0, "", 0, 0, 0, taken)
        self.sealed_batches += 1
        self.sealed_records += len(records)
        return SealedInfo(sealed.seq, sealed.digest, len(records), len(state_rows),
                          len(aggregates), taken)

    def _committed(self, plan: Plan | None) -> None:
        if plan is not None and self._aggregator is not None:
            self._aggregator.commit(plan)

    def flush(self, full_only: bool = False) -> int:
        """Seal until the inbox is empty (or, with full_only, until less than a batch waits)."""
        count = 0
        while True:
            with self._lock:
                self._waiting = 0
            info = self.seal_next()
            if info is None:
                break
            count += 1
            full = info.taken + info.aggregates >= self._max
            if full_only and not full:
                break
        if count:
            self._on_sealed()
        return count

    def run(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + self._interval_s
        while not stop.is_set():
            woke = self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            if stop.is_set():
                break
            if woke and time.monotonic() < deadline:
                self.flush(full_only=True)
                continue
            self.flush()
            deadline = time.monotonic() + self._interval_s
