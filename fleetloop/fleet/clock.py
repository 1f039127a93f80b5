"""The simulator's two clocks.

The transport runs on the wall clock (device.port's ticks: keepalive, ack timeouts, heartbeats,
reconnect back-off), exactly as on a board. Sampling and record times run on the data clock,
`speed` times faster, over a span of simulated time that ends at the wall clock's "now": the
data clock starts `span - span / speed` before the run starts, so it meets the wall clock at the
end and no record time ever lies in the future.

Each device reads the data clock through its own DeviceClock, which the scheduler sets before
every step: the device's next sampling tick when that is due (a record is dated at its tick, so
a loop that fell behind catches up tick by tick instead of skipping), else the fleet's data time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class FleetClock:
    """Data time (ms since the epoch) as a function of the wall clock."""

    span_ms: int
    speed: float
    start_ms: int = 0  # data time at the start of the run
    end_ms: int = 0  # data time at which the run's span ends (the wall clock's "now" then)
    _wall0: float = field(default=0.0, repr=False)

    def start(self, wall_ms: int | None = None) -> None:
        """Begin the span now: it ends span_ms / speed of wall time from here, at that moment's
        wall clock."""
        now = int(time.time() * 1000) if wall_ms is None else wall_ms
        wall_span = self.span_ms / self.speed
        self.end_ms = now + int(wall_span)
        self.start_ms = self.end_ms - self.span_ms
        self._wall0 = time.monotonic()

    def now(self) -> int:
        """Data time now, never past the end of the span."""
        gone = (time.monotonic() - self._wall0) * 1000.0 * self.speed
        return min(self.end_ms, self.start_ms + int(gone))

    def wall_s(self, data_ms: float) -> float:
        """Wall seconds that `data_ms` of data time take."""
        return data_ms / self.speed / 1000.0

    @property
    def done(self) -> bool:
        return self.now() >= self.end_ms

    def fraction(self) -> float:
        return (self.now() - self.start_ms) / self.span_ms if self.span_ms else 1.0


class DeviceClock:
    """What device.agent reads as its data clock (the names of device.port's ticks); the
    scheduler sets `now_ms` before each step. Ticks are data ms since the epoch: plain ints,
    no wrap on CPython."""

    __slots__ = ("now_ms",)

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def ticks_ms(self) -> int:
        return self.now_ms

    def time_ms(self) -> int:
        return self.now_ms

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        return a - b

    @staticmethod
    def ticks_add(a: int, delta: int) -> int:
        return a + delta
