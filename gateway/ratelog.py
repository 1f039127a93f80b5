"""A logger wrapper that lets through at most `burst` messages per `window_s`, then a summary:
bad input from one noisy device must not flood the gateway's log."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, burst: int = 20, window_s: float = 60.0) -> None:
        self._logger = logger
        self._burst = burst
        self._window_s = window_s
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self._window_s:
                if self._suppressed:
                    self._logger.warning("%d similar messages suppressed in the last %.0fs",
                                         self._suppressed, self._window_s)
                self._window_start, self._count, self._suppressed = now, 0, 0
            self._count += 1
            if self._count > self._burst:
                self._suppressed += 1
                return
        self._logger.warning(msg, *args)
