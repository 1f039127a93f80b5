"""Device messages ingest refuses (malformed, oversized, wrong types, a device claiming another
id): kept in a bounded table for a technician instead of only logged.

Bounded three ways, so one device with a genuine certificate can neither fill the disk, nor
push other devices' rows out, nor slow anyone's ingest:
- per device, at most `rate` rows a second are written (a token bucket, `burst` at once); the
  rest are only counted;
- per device, at most `per_device` rows are kept (its oldest go first), and in all at most
  `max_rows` (the oldest go first);
- `add` never touches the disk: it is called on ingest's hot path and only queues (at most
  `max_pending` rows); `run` writes the queue in one short transaction every `flush_s`.
The total count of refused messages is kept in the store (it survives a restart).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gateway.bucket import TokenBucket
from gateway.errors import StoreError
from gateway.store import QuarantineRow, Store
from protocol import topics

log = logging.getLogger("fleetloop.gateway.quarantine")

HEAD_BYTES = 64  # of each payload kept
MAX_REASON = 200
MAX_TOPIC = 200
_MAX_BUCKETS = 10_000  # devices whose write rate is remembered (least recently refused go)


def _now_ms() -> int:
    return int(time.time() * 1000)


def device_of(topic: str) -> str | None:
    """The device a topic speaks for (fleet/<id>/<anything>), None when it names none."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == topics.PREFIX and topics.valid_device_id(parts[1]):
        return parts[1]
    return None


class Quarantine:
    def __init__(self, store: Store, max_rows: int = 10_000, per_device: int = 50,
                 rate: float = 2.0, burst: float = 20.0, flush_s: float = 0.5,
                 max_pending: int = 1000, clock: Callable[[], float] = time.monotonic,
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._max_rows = max_rows
        self._per_device = per_device
        self._rate = rate
        self._burst = burst
        self._flush_s = flush_s
        self._max_pending = max_pending
        self._clock = clock
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str | None, TokenBucket] = OrderedDict()
        self._pending: list[QuarantineRow] = []
        self._refused = 0  # refused since the last flush (kept or not)
        self._not_kept = 0  # refused but not written (rate limit, full queue, disk)

    def add(self, topic: str, reason: str, payload: bytes) -> None:
        """Note one refused message; cheap and safe from any thread."""
        device = device_of(topic)
        now = self._clock()
        with self._lock:
            self._refused += 1
            bucket = self._buckets.pop(device, None) or TokenBucket(self._rate, self._burst, now)
            self._buckets[device] = bucket  # most recently refused last
            if len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
            if not bucket.take(now) or len(self._pending) >= self._max_pending:
                self._not_kept += 1
                return
            self._pending.append(QuarantineRow(device, topic[:MAX_TOPIC], reason[:MAX_REASON],
                                               len(payload), self._clock_ms(),
                                               bytes(payload[:HEAD_BYTES])))

    def flush(self) -> int:
        """Write what is queued (and trim the table); the number of rows written."""
        with self._lock:
            rows, self._pending = self._pending, []
            refused, self._refused = self._refused, 0
        if not rows and not refused:
            return 0
        try:
            self._store.add_quarantine(rows, refused, self._per_device, self._max_rows)
        except (sqlite3.Error, StoreError) as exc:
            # Diagnostics only: on a full disk they are counted in memory, never retried.
            with self._lock:
                self._not_kept += len(rows)
            log.warning("could not keep %d quarantined messages: %s", len(rows), exc)
            return 0
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._flush_s):
            self.flush()
        self.flush()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"pending": len(self._pending) + 0, "not_kept": self._not_kept,
                    "unflushed": self._refused}
