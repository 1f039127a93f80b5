"""A token bucket: at most `rate` events a second on average, `burst` at once. Not thread-safe:
its owner holds the lock."""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        """True (and one token less) if an event may happen at `now`."""
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    @property
    def last(self) -> float:
        """When it was last asked."""
        return self._last
