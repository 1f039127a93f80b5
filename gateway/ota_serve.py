"""Update bytes to devices: answer each fetch on fleet/<id>/fetch with chunks on fleet/<id>/chunk
(protocol.ota), from the verified bundle in memory (gateway.ota_cache).

The device is the one the topic names: the broker's ACL lets a certificate publish only on its
own fetch topic. Per fetch:
    not the device's current offer         -> ERROR "no offer <id>"
    a file the bundle does not carry       -> ERROR "file <f> is not in this bundle"
    an offset past the file's end          -> ERROR "offset <o> is past the end of file <f> ..."
    too many devices downloading already   -> BUSY, the wait in ms (20 s plus up to 10 s jitter)
    else                                   -> up to CHUNKS_PER_FETCH DATA chunks from the offset
A device is downloading while it fetched within the last ACTIVE_S seconds; at most
`concurrent` devices are, so a site's link and a gateway's CPU are shared by a known number.

Abuse and fairness: fetches arrive on the MQTT network thread that also carries telemetry, so
submit() does only what is cheap there (a size check, the per-device token bucket, a put on a
bounded queue) and never blocks: what is too large, too frequent or finds the queue full is
dropped and counted. Decoding and replies happen on this part's own thread. Chunks go out at
QoS 0 without waiting for anything. One device's garbage costs only its own bucket.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gateway.bucket import TokenBucket
from gateway.ota_cache import Ready
from gateway.ratelog import RateLimitedLog
from protocol import ota, topics

log = logging.getLogger("fleetloop.gateway.ota_serve")
_drop_log = RateLimitedLog(log)

# A device counts as downloading while it fetched within this long: it asks again within 3 s
# when chunks stop coming, and resets for a few seconds between file 0 and the rest. Longer
# would keep finished devices' places from the ones told to wait.
ACTIVE_S = 15.0
CHUNKS_PER_FETCH = 4
BUSY_MS = 20_000
BUSY_JITTER_MS = 10_000
MAX_FETCH_BYTES = 128  # protocol.ota.decode_fetch's own limit, checked before any parsing
QUEUE_MAX = 4096
PRUNE_EVERY_S = 10.0

Send = Callable[[str, bytes], bool]  # QoS 0 publish, no wait; False if it could not be sent
Lookup = Callable[[str], Ready | None]  # the bundle of the device's current offer


class ChunkServer:
    def __init__(self, send: Send, lookup: Lookup, concurrent: int = 16,
                 fetch_rate: float = 40.0, revoked: Callable[[str], bool] = lambda d: False,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self._send = send
        self._lookup = lookup
        self._concurrent = concurrent
        self._rate = fetch_rate
        self._revoked = revoked
        self._clock = clock
        self._rng = rng or random.Random()
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(QUEUE_MAX)
        self._lock = threading.Lock()  # guards the fields below
        self._buckets: dict[str, TokenBucket] = {}
        self._active: dict[str, float] = {}  # device -> when it last fetched (served)
        self._dropped: Counter[str] = Counter()
        self._fetches = 0
        self._chunks = 0
        self._bytes = 0
        self._busy = 0
        self._errors = 0
        self._unsent = 0

    # -- the MQTT network thread ---------------------------------------------------------------
    def submit(self, topic: str, payload: bytes) -> None:
        """Take a fetch as it arrives; never blocks, never raises for bad input."""
        device = topic[6:-6] if topic.startswith("fleet/") and topic.endswith("/fetch") else ""
        if not topics.valid_device_id(device):
            self._drop("topic", topic)
            return
        if len(payload) > MAX_FETCH_BYTES:
            self._drop("size", topic)
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(device)
            if bucket is None:
                burst = max(1.0, self._rate)  # a second's worth, at least one fetch
                bucket = self._buckets[device] = TokenBucket(self._rate, burst, now)
            allowed = bucket.take(now)
        if not allowed:
            self._drop("rate", topic)
            return
        try:
            self._queue.put_nowait((device, payload))
        except queue.Full:
            self._drop("queue", topic)

    def _drop(self, why: str, topic: str) -> None:
        with self._lock:
            self._dropped[why] += 1
        _drop_log.warning("dropped a fetch on %r: %s", topic[:120], why)

    # -- this part's thread --------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        next_prune = self._clock() + PRUNE_EVERY_S
        while not stop.is_set():
            try:
                device, payload = self._queue.get(timeout=0.2)
            except queue.Empty:
                device = ""
            if device:
                self.handle(device, payload)
            if self._clock() >= next_prune:
                self.prune()
                next_prune = self._clock() + PRUNE_EVERY_S

    def handle(self, device: str, payload: bytes) -> None:
        """Answer one fetch from `device` (already rate limited)."""
        try:
            offer_id, index, offset = ota.decode_fetch(payload)
        except (ValueError, TypeError, UnicodeError):
            self._drop("bad", f"fleet/{device}/fetch")
            return
        if self._revoked(device):
            self._drop("revoked", f"fleet/{device}/fetch")
            return
        with self._lock:
            self._fetches += 1
        ready = self._lookup(device)
        if ready is None or ready.offer_id != offer_id:
            self._reply_error(device, offer_id, index, offset, f"no offer {offer_id}")
            return
        data = ready.files.get(index)
        if data is None:
            self._reply_error(device, offer_id, index, offset,
                              f"file {index} is not in this bundle")
            return
        if offset > len(data):
            self._reply_error(device, offer_id, index, offset,
                              f"offset {offset} is past the end of file {index} "
                              f"({len(data)} bytes)")
            return
        if not self._admit(device):
            wait = BUSY_MS + self._rng.randrange(BUSY_JITTER_MS)
            with self._lock:
                self._busy += 1
            self._reply(device, ota.CHUNK_BUSY, offer_id, index, offset, str(wait).encode())
            return
        view = memoryview(data)
        at = offset
        for _ in range(CHUNKS_PER_FETCH):
            piece = view[at:at + ota.CHUNK_BYTES]
            if not self._reply(device, ota.CHUNK_DATA, offer_id, index, at, piece):
                break
            with self._lock:
                self._chunks += 1
                self._bytes += len(piece)
            at += len(piece)
            if at >= len(data):
                break  # the last chunk (an empty one for a fetch at the very end)

    def _admit(self, device: str) -> bool:
        """Whether `device` may download now: it already is, or a place is free."""
        now = self._clock()
        with self._lock:
            last = self._active.get(device)
            if last is None or now - last >= ACTIVE_S:
                for other, seen in list(self._active.items()):
                    if now - seen >= ACTIVE_S:
                        del self._active[other]
                if len(self._active) >= self._concurrent:
                    return False
            self._active[device] = now
            return True

    def _reply_error(self, device: str, offer_id: str, index: int, offset: int,
                     reason: str) -> None:
        with self._lock:
            self._errors += 1
        self._reply(device, ota.CHUNK_ERROR, offer_id, index, offset, reason.encode()[:200])

    def _reply(self, device: str, kind: int, offer_id: str, index: int, offset: int,
               data: bytes | memoryview) -> bool:
        chunk = ota.encode_chunk(kind, offer_id, index, offset, bytes(data))
        if self._send(topics.topic(device, topics.CHUNK), chunk):
            return True
        with self._lock:
            self._unsent += 1
        return False

    def prune(self) -> None:
        """Forget the buckets of devices quiet for a while (each is one small object)."""
        now = self._clock()
        with self._lock:
            for device in [d for d, b in self._buckets.items() if now - b.last > ACTIVE_S]:
                del self._buckets[device]

    def downloading(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return sorted(d for d, t in self._active.items() if now - t < ACTIVE_S)

    def status(self) -> dict[str, Any]:
        downloading = self.downloading()
        with self._lock:
            return {"downloading": downloading, "concurrent": self._concurrent,
                    "fetches": self._fetches, "chunks_sent": self._chunks,
                    "bytes_sent": self._bytes, "busy_replies": self._busy,
                    "error_replies": self._errors, "unsent": self._unsent,
                    "dropped": dict(self._dropped), "queued": self._queue.qsize()}
