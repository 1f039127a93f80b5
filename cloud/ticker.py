"""Work the cloud does by itself, on a clock, while it serves: rollouts move on their soak and
deadlines, experiments are judged when their window ends. Nobody has to be calling an endpoint
for that to happen (a gateway long-polling for offers would otherwise wait for itself).

One daemon thread per server process runs each `Job` every `every_s` seconds, each run on a
store of its own; a job that raises is logged and runs again at its next turn (one bad rollout
or policy must not stop the others' clock). Several worker processes each run the jobs: every
job does its writes in one transaction and judges from what is stored, so a second run finds
nothing left to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from cloud.store import Store

log = logging.getLogger("fleetloop.cloud.ticker")


@dataclass(frozen=True)
class Job:
    name: str
    every_s: float
    run: Callable[[Store, int], None]  # (store, now in ms)


class Ticker:
    def __init__(self, jobs: Sequence[Job], lend: Callable[[], AbstractContextManager[Store]],
                 clock: Callable[[], float] = time.time) -> None:
        # lend: a store for one run (Database.connection)
        self._jobs = list(jobs)
        self._lend = lend
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._due = {job.name: 0.0 for job in self._jobs}
        self.runs = {job.name: 0 for job in self._jobs}  # for status and tests

    def start(self) -> None:
        if not self._jobs or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="cloud-ticker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self._jobs:
                if now >= self._due[job.name]:
                    self._due[job.name] = now + job.every_s
                    self.run_once(job)
            wait = min(self._due.values()) - time.monotonic()
            self._stop.wait(max(0.01, wait))

    def run_once(self, job: Job) -> None:
        try:
            with self._lend() as store:
                job.run(store, round(self._clock() * 1000))
        except Exception:  # logged with its traceback; the job runs again next turn
            log.exception("%s: run failed", job.name)
        self.runs[job.name] += 1
