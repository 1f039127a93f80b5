"""One part's loop in a thread, restarted if it crashes: the gateway's only supervisor, and so
the only place that catches every Exception (it logs, counts, backs off and restarts)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("fleetloop.gateway.worker")

Target = Callable[[threading.Event], None]


class Worker:
    def __init__(self, name: str, target: Target, wake: Callable[[], None] | None = None,
                 on_crash: Callable[[], None] | None = None, restart_max_s: float = 10.0) -> None:
        self.name = name
        self._target = target
        self._wake = wake
        self._on_crash = on_crash
        self._restart_max_s = restart_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._target(self._stop)
                if not self._stop.is_set():
                    log.warning("%s returned without being asked to stop; restarting", self.name)
                    self._stop.wait(delay)
            except Exception:
                self.restarts += 1
                log.exception("%s crashed (restart %d in %.1fs)", self.name, self.restarts, delay)
                if self._stop.wait(delay):
                    return
                if self._on_crash is not None:
                    try:
                        self._on_crash()
                    except Exception:
                        log.exception("%s: recovery after the crash failed", self.name)
                delay = min(delay * 2, self._restart_max_s)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the loop to end, nudge it awake, and wait for it."""
        self._stop.set()
        if self._wake is not None:
            self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("%s did not stop within %.0fs", self.name, timeout)
