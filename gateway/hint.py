"""The back-pressure hint (protocol.hint): how long, at least, every device waits before it
reconnects, published retained (QoS 1) on protocol.hint.TOPIC for every device to read.

A restarted broker would otherwise see all its devices come back at once. The value is either
fixed by the `min_reconnect_ms` setting or computed so the devices come back over a window the
broker can absorb: ceil(known devices / reconnect_rate) seconds, in ms, capped at
protocol.hint.MAX_HINT_MS. Known devices are those in the gateway's seq registry.

The publisher recomputes every `interval_s` and publishes only when the value changed, or when
the gateway's connection to its broker is a new one (a broker that lost its retained messages
learns the hint again). A failed publish is tried again on the next tick. Devices keep the last
hint they read on flash, so a hint published late still holds for their next reconnect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from protocol import hint as hint_codec

log = logging.getLogger("fleetloop.gateway.hint")

SOURCE_SETTING = "setting"
SOURCE_COMPUTED = "computed"

# (topic, payload, retain, timeout_s) -> True once the broker acknowledged it
Publish = Callable[[str, bytes, bool, float], bool]


def computed_hint_ms(known_devices: int, reconnect_rate: int) -> int:
    """ceil(known_devices / reconnect_rate * 1000) ms, capped at MAX_HINT_MS (exact integers)."""
    if known_devices <= 0:
        return 0
    if reconnect_rate < 1:
        raise ValueError("reconnect_rate must be >= 1")
    return min(hint_codec.MAX_HINT_MS, -(-known_devices * 1000 // reconnect_rate))


def _now_ms() -> int:
    return int(time.time() * 1000)


class HintPublisher:
    def __init__(self, publish: Publish, known_devices: Callable[[], int],
                 connection: Callable[[], int | None], fixed_ms: int | None = None,
                 reconnect_rate: int = 100, interval_s: float = 30.0, poll_s: float = 1.0,
                 publish_timeout_s: float = 10.0, clock_ms: Callable[[], int] = _now_ms) -> None:
        if fixed_ms is not None:
            hint_codec.encode(fixed_ms)  # ValueError now rather than at every publish
        self._publish = publish
        self._known_devices = known_devices
        self._connection = connection
        self._fixed_ms = fixed_ms
        self._rate = reconnect_rate
        self._interval_s = interval_s
        self._poll_s = min(poll_s, interval_s)
        self._publish_timeout_s = publish_timeout_s
        self._clock_ms = clock_ms
        self._lock = threading.Lock()  # guards the fields below (read by the status thread)
        self._known = 0
        self._target: int | None = None
        self._in_effect: int | None = None  # what the broker holds retained, as far as we know
        self._published_on: int | None = None  # the connection it was published on
        self._published = 0
        self._last_published_ms: int | None = None
        self._last_error: str | None = None

    @property
    def source(self) -> str:
        return SOURCE_SETTING if self._fixed_ms is not None else SOURCE_COMPUTED

    def compute(self) -> int:
        """The hint for now (the setting, or from the known devices); remembered as the target."""
        known = self._known_devices()
        value = (self._fixed_ms if self._fixed_ms is not None
                 else computed_hint_ms(known, self._rate))
        with self._lock:
            self._known = known
            if value != self._target and self._target is not None:
                log.info("back-pressure hint changes from %d to %d ms (%d known devices)",
                         self._target, value, known)
            self._target = value
        return value

    def publish_if_needed(self) -> bool:
        """Publish the target if the broker does not hold it yet (new value, or a new
        connection); True if a publish was made and acknowledged."""
        connection = self._connection()
        with self._lock:
            target = self._target
            due = (target is not None and connection is not None
                   and (target != self._in_effect or connection != self._published_on))
        if not due or target is None or connection is None:
            return False
        ok = self._publish(hint_codec.TOPIC, hint_codec.encode(target), True,
                           self._publish_timeout_s)
        with self._lock:
            if ok:
                self._in_effect = target
                self._published_on = connection
                self._published += 1
                self._last_published_ms = self._clock_ms()
                self._last_error = None
            else:
                self._last_error = "the broker did not acknowledge the hint (down?)"
        if ok:
            log.info("published back-pressure hint: min_reconnect_ms %d (%s)", target,
                     self.source)
        return ok

    def run(self, stop: threading.Event) -> None:
        next_compute = 0.0
        while True:
            now = time.monotonic()
            if now >= next_compute:
                self.compute()
                next_compute = now + self._interval_s
            self.publish_if_needed()
            if stop.wait(self._poll_s):
                return

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"min_reconnect_ms": self._in_effect, "target_ms": self._target,
                    "source": self.source, "setting_ms": self._fixed_ms,
                    "known_devices": self._known, "reconnect_rate": self._rate,
                    "interval_s": self._interval_s, "topic": hint_codec.TOPIC,
                    "published": self._published, "last_published_ms": self._last_published_ms,
                    "last_error": self._last_error}
