"""Long-poll for gateways: hold a gateway's request until its configs, its devices' update
offers or the fleet's revocations change, or the wait ends; gateways behind NAT then learn of
a change at once without polling every few seconds.

One `Changes` per process watches the fleet-wide stamp (the newest config revision, a digest of
the revocations and the CRL number, and the offers counter the rollout tables bump in the
transaction of each change: one row, however many devices rollouts hold) with one cheap read
every `every_s` while anyone waits, and wakes every waiter when it moves; each waiter then
checks what concerns its own gateway (for offers: a digest of its current offers). Waits
are asyncio waits: a held request costs a coroutine, never a worker thread or a database
connection (each look borrows a connection briefly, in the thread pool). Changes made through
another worker process or another machine are seen within `every_s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from cloud.services import offers as offers_service
from cloud.store import Store

MAX_WAIT_S = 60.0
# A stopping server waits for requests in flight, and a held one may have a minute to go: the
# server gives them this long, then cancels them (the gateways ask again once it is back).
SHUTDOWN_GRACE_S = 3  # seconds (uvicorn takes an int)


class Stamp(NamedTuple):
    """The fleet-wide state a change of which may concern some gateway."""

    config: int  # the newest config revision
    revocations: str  # a digest of the revoked devices and the CRL in use
    offers: int  # the offers counter (cloud.rollout_db)


@dataclass(frozen=True)
class Look:
    """What a gateway can wait on, as of now."""

    stamp: Stamp
    configs: bool  # configs of this gateway's devices newer than the revision it has
    offers: str | None  # a digest of this gateway's offers (None: not asked)

    @property
    def config(self) -> int:
        return self.stamp.config

    @property
    def revocations(self) -> str:
        return self.stamp.revocations


def revocations_tag(store: Store) -> str:
    h = hashlib.sha256()
    for row in store.revoked_devices():
        h.update(f"{row.device}\0{row.status_ms}\0{row.cert_serial}\n".encode())
    crl = store.latest_crl()
    h.update(f"crl {crl.number if crl else 0}".encode())
    return h.hexdigest()[:32]


def stamp(store: Store) -> Stamp:
    return Stamp(store.max_config_revision(), revocations_tag(store), store.offers_stamp())


def look(store: Store, gateway_id: str, after: int | None, offers: bool = False) -> Look:
    """What is current for the gateway (`after` None: its configs are not asked about;
    `offers` False: nor its offers). The stamp is read first: a change after it moves the
    stamp again, so a waiter never sleeps through it."""
    now = stamp(store)
    waiting = after is not None and bool(store.configs_after(after, gateway_id))
    return Look(now, waiting, offers_service.tag(store, gateway_id) if offers else None)


class Changes:
    """Wakes the waiters of one event loop when `read()` returns another stamp."""

    def __init__(self, read: Callable[[], Stamp], every_s: float = 0.5) -> None:
        self._read = read  # a blocking read, run in a thread
        self._every_s = every_s
        self._stamp: Stamp | None = None
        self._read_at = 0.0  # monotonic time the read that gave _stamp started
        self._moved: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters = 0
        self._task: asyncio.Task[None] | None = None

    async def wait(self, since: Stamp, seen_at: float, timeout: float) -> None:
        """Return when the stamp differs from `since` (read at monotonic time `seen_at` or
        later), or after `timeout` s. A shared stamp read before `seen_at` may be older than
        `since`: the waiter then waits for the next read instead of looking again and again
        until it comes (which would spin every waiter after every change)."""
        moved = self._join()
        self._waiters += 1
        try:
            if self._stamp is not None and self._stamp != since and self._read_at >= seen_at:
                return
            try:
                await asyncio.wait_for(moved.wait(), timeout)
            except TimeoutError:
                pass
        finally:
            self._waiters -= 1

    def _join(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._moved is None:  # a new loop (a test's app restart)
            self._loop, self._moved, self._task, self._stamp = loop, asyncio.Event(), None, None
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._watch())
        return self._moved

    async def _watch(self) -> None:
        while True:
            current: Stamp | None
            started = time.monotonic()
            try:
                current = await asyncio.to_thread(self._read)
            except Exception:  # any backend's error (sqlite3, psycopg): this loop is the
                # supervisor of the shared watch; the waiters time out as usual meanwhile
                current = self._stamp
            if current != self._stamp:  # the first read too: a waiter may be behind it
                self._stamp, self._read_at = current, started
                if self._moved is not None:
                    moved, self._moved = self._moved, asyncio.Event()
                    moved.set()
            await asyncio.sleep(self._every_s)
            if self._waiters == 0:
                self._task = None
                return
