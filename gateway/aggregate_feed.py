"""The cloud's aggregation policy, fetched: cloud ops set each product's mode (raw, N or
N:local) in the cloud (`PUT /api/v1/aggregation/{product}`), and every gateway asks for it
every `aggregate_poll_s` (`GET /api/v1/gateway/aggregation`). A new policy is stored in the
gateway's database before it is used (gateway.aggregate), so a gateway that restarts with
the cloud unreachable keeps summarising as it was told. A gateway started with its own
`aggregate` setting follows that instead, and this feed only reports what the cloud says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.aggregate import Aggregator
from gateway.aggregate_policy import Policy, from_modes
from gateway.cloud_get import get_json
from gateway.errors import GatewayError

log = logging.getLogger("fleetloop.gateway.aggregate_feed")

MODES_PATH = "/api/v1/gateway/aggregation"


class FeedError(GatewayError):
    """One poll failed; the policy in use did not change."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def parse(obj: Any) -> Policy:
    """The policy of a `GET /api/v1/gateway/aggregation` answer; FeedError says what is wrong."""
    products = obj.get("products") if isinstance(obj, dict) else None
    if not isinstance(products, dict) or not all(isinstance(v, str) for v in products.values()):
        raise FeedError("aggregation response needs products: {product: mode}")
    try:
        return from_modes(products)
    except GatewayError as exc:
        raise FeedError(f"aggregation response refused: {exc}") from None


class AggregationFeed:
    def __init__(self, aggregator: Aggregator, cloud_url: str, token_path: Path,
                 interval_s: float = 30.0, timeout_s: float = 10.0,
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self._aggregator = aggregator
        self._url = cloud_url.rstrip("/") + MODES_PATH
        self._token_path = token_path
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._last_ok_ms: int | None = None
        self._last_error: str | None = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"last_ok_ms": self._last_ok_ms, "last_error": self._last_error}

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=self._timeout_s) as http:
            while True:
                try:
                    self.poll_once(http)
                except FeedError as exc:
                    with self._lock:
                        repeated = self._last_error == str(exc)
                        self._last_error = str(exc)
                    if not repeated:
                        log.warning("aggregation poll: %s", exc)
                if stop.wait(self._interval_s):
                    return

    def poll_once(self, http: httpx.Client) -> Policy:
        policy = parse(get_json(http, self._url, self._token_path, "aggregation", FeedError))
        self._aggregator.set_cloud_policy(policy)
        with self._lock:
            self._last_ok_ms = self._clock_ms()
            self._last_error = None
        return policy
