"""Spool -> cloud: POST the oldest sealed batch; delete it from the spool only on a 2xx.

Batches go strictly in chain order, one at a time, so the cloud sees seq N before N+1. Failures
are retried with capped, jittered exponential backoff and never delete anything:
- network errors and 5xx: the cloud is down or busy, retry;
- 409: the cloud's chain disagrees with ours (it is missing a batch, or has another one at this
  seq): kept and reported loudly, an operator must look;
- 401/403/404/408/429 (bad token, wrong URL, busy): the problem is not the batch; kept, retried
  and reported loudly;
- any other 4xx (the cloud refuses this batch itself): the batch is dead-lettered - moved whole,
  with the cloud's answer, to the dead-letter table a technician sees in `diag` - and a signed
  gap (protocol.batch.Gap) takes its place in the chain, so the cloud records the hole and every
  later batch flows. One bad batch never holds the spool.
The token file is read on every attempt, so registering the gateway (or rotating its token)
while it runs takes effect without a restart. A drop (batches the spool budget dropped unsent,
gateway.spool_budget) goes where a gap goes and is treated like one.

Back within seconds after an outage: while it waits out a backoff after the cloud was
unreachable or answered 5xx, the uplink asks the cloud's /healthz about once a second (jittered,
a short timeout, nothing else): as soon as the cloud answers, the batch goes. A cloud that
refuses for another reason (a bad token, a chain conflict) is up, so no probe shortens those
waits.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.backoff import Backoff
from gateway.store import KIND_DROP, KIND_GAP, SpooledBatch, Store
from protocol.batch import (
    GAP_CONTENT_TYPE,
    GAP_PATH,
    HEADER_GATEWAY,
    HEADER_SIGNATURE,
    INGEST_PATH,
    MAX_REASON_CHARS,
    Gap,
    SealedBatch,
    seal_gap,
)

# Answers that say nothing about the batch itself: keep it and retry.
_NOT_THE_BATCH = frozenset({401, 403, 404, 408, 409, 429})
_GAP_KINDS = frozenset({KIND_GAP, KIND_DROP})
HEALTH_PATH = "/healthz"

log = logging.getLogger("fleetloop.gateway.uplink")


class Outcome(enum.Enum):
    SENT = "sent"
    EMPTY = "empty"
    FAILED = "failed"


def _now_ms() -> int:
    return int(time.time() * 1000)


def read_token(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def _prev_of(body: bytes) -> str:
    """The `prev` inside a sealed body (spool rows of schema version 1 do not carry it)."""
    return str(json.loads(zlib.decompress(body))["prev"])


class Uplink:
    def __init__(self, store: Store, gateway_id: str, cloud_url: str, token_path: Path,
                 backoff: Backoff, key: Ed25519PrivateKey, timeout_s: float = 10.0,
                 clock_ms: Callable[[], int] = _now_ms, probe_s: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._gateway_id = gateway_id
        self._url = cloud_url.rstrip("/") + INGEST_PATH
        self._gap_url = cloud_url.rstrip("/") + GAP_PATH
        self._health_url = cloud_url.rstrip("/") + HEALTH_PATH
        self._probe_s = probe_s
        self._rng = rng or random.Random()
        self._outage = False  # the last failure was the cloud being away (unreachable, 5xx)
        self._probes = 0
        self._latency_ms: float | None = None
        self._key = key
        self._token_path = token_path
        self._backoff = backoff
        self._timeout_s = timeout_s
        self._clock_ms = clock_ms
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sent_batches = 0
        self._sent_records = 0
        self._failures = 0
        self._last_ok_ms: int | None = None
        self._last_error: str | None = None
        self._last_error_ms: int | None = None
        self._next_retry_ms: int | None = None
        self._dead_letters = 0

    def wake(self) -> None:
        """A batch was sealed (or we are stopping): look at the spool now."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self._url,
                "last_ok_ms": self._last_ok_ms,
                "last_error": self._last_error,
                "last_error_ms": self._last_error_ms,
                "next_retry_ms": self._next_retry_ms,
                "sent_batches": self._sent_batches,
                "sent_records": self._sent_records,
                "failures": self._failures,
                "dead_lettered": self._dead_letters,
                "latency_ms": self._latency_ms,
                "next_try_s": (None if self._next_retry_ms is None else
                               round(max(0.0, (self._next_retry_ms - self._clock_ms()) / 1000), 1)),
                "probes": self._probes,
            }

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=self._timeout_s) as http:
            while not stop.is_set():
                outcome = self.send_one(http)
                if outcome is Outcome.SENT:
                    continue
                if outcome is Outcome.EMPTY:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                delay = self._backoff.next()
                with self._lock:
                    self._next_retry_ms = self._clock_ms() + int(delay * 1000)
                    outage = self._outage
                if outage:
                    self.wait_probing(http, stop, delay)
                else:
                    stop.wait(delay)

    def wait_probing(self, http: httpx.Client, stop: threading.Event, delay: float) -> bool:
        """Wait up to `delay` s, asking /healthz about every probe_s s; True as soon as the
        cloud answers 2xx (the caller then sends at once)."""
        deadline = time.monotonic() + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            step = min(left, self._probe_s * self._rng.uniform(0.75, 1.25))
            if stop.wait(step):
                return False
            if deadline - time.monotonic() <= 0:
                return False
            with self._lock:
                self._probes += 1
            try:
                resp = http.get(self._health_url, timeout=min(self._probe_s, self._timeout_s))
            except httpx.HTTPError:
                continue
            if resp.is_success:
                log.info("the cloud answers again: sending now")
                return True

    def send_one(self, http: httpx.Client) -> Outcome:
        """Try to deliver the oldest spooled batch once."""
        batch = self._store.oldest_batch()
        if batch is None:
            return Outcome.EMPTY
        token = read_token(self._token_path)
        if token is None:
            return self._failed(f"no gateway token in {self._token_path} (register the gateway "
                                "with the cloud and write its token there)", loud=False)
        url = self._gap_url if batch.kind in _GAP_KINDS else self._url
        started = time.monotonic()
        try:
            resp = http.post(url, content=batch.body, headers=self._headers(batch, token))
        except httpx.HTTPError as exc:
            return self._failed(f"cloud unreachable: {type(exc).__name__}: {exc}", loud=False,
                                outage=True)
        if resp.is_success:
            latency_ms = round((time.monotonic() - started) * 1000, 1)
            self._store.delete_batch(batch.seq)
            self._backoff.reset()
            with self._lock:
                self._sent_batches += 1
                self._sent_records += 0 if batch.kind == KIND_DROP else batch.records
                self._last_ok_ms = self._clock_ms()
                self._next_retry_ms = None
                self._latency_ms = latency_ms
                self._outage = False
            log.debug("batch %d delivered: %s", batch.seq, resp.text[:200])
            return Outcome.SENT
        detail = resp.text[:MAX_REASON_CHARS].strip()
        what = {KIND_GAP: "gap", KIND_DROP: "drop"}.get(batch.kind, "batch")
        if resp.status_code == 409:
            return self._failed(f"{what} {batch.seq} refused as a chain conflict (409): {detail}; "
                                "kept in the spool", loud=True)
        if 400 <= resp.status_code < 500 and (resp.status_code in _NOT_THE_BATCH
                                              or batch.kind in _GAP_KINDS):
            return self._failed(f"{what} {batch.seq} refused with {resp.status_code}: {detail}; "
                                "kept in the spool", loud=True)
        if 400 <= resp.status_code < 500:
            self._dead_letter(batch, resp.status_code, detail)
            return Outcome.SENT  # the gap goes next, at once
        return self._failed(f"cloud error {resp.status_code} for batch {batch.seq}: {detail}",
                            loud=False, outage=True)

    def _headers(self, batch: SpooledBatch, token: str) -> dict[str, str]:
        if batch.kind in _GAP_KINDS:
            return {"Content-Type": GAP_CONTENT_TYPE, HEADER_GATEWAY: self._gateway_id,
                    HEADER_SIGNATURE: batch.signature, "Authorization": f"Bearer {token}"}
        sealed = SealedBatch(self._gateway_id, batch.seq, batch.digest, batch.body,
                             batch.signature)
        return sealed.headers(token)

    def _dead_letter(self, batch: SpooledBatch, status: int, reason: str) -> None:
        """Keep the refused batch aside and put a signed gap in its place of the chain."""
        now = self._clock_ms()
        prev = batch.prev or _prev_of(batch.body)
        gap = Gap(gateway=self._gateway_id, seq=batch.seq, prev=prev, digest=batch.digest,
                  records=batch.records, states=batch.states, status=status, reason=reason,
                  created_ms=now)
        body, signature = seal_gap(gap, self._key)
        self._store.dead_letter(batch, status, reason, SpooledBatch(
            seq=batch.seq, digest=batch.digest, body=body, signature=signature,
            records=batch.records, states=batch.states, created_ms=now, kind=KIND_GAP,
            prev=prev), now)
        with self._lock:
            self._dead_letters += 1
            self._last_error = (f"batch {batch.seq} ({batch.records} records) refused with "
                                f"{status}: {reason}; dead-lettered, a gap goes in its place")
            self._last_error_ms = now
        log.error("%s", self._last_error)

    def _failed(self, message: str, loud: bool, outage: bool = False) -> Outcome:
        with self._lock:
            repeated = message == self._last_error
            self._outage = outage
            self._failures += 1
            self._last_error = message
            self._last_error_ms = self._clock_ms()
        if loud:
            log.error("%s", message)
        elif not repeated:
            log.warning("%s", message)
        return Outcome.FAILED
