"""Cloud -> devices: poll the cloud for new signed configs and publish each one retained, QoS 1,
on fleet/<device>/config. The revision cursor is persisted only after the broker acknowledged
every publish, so a crash or a broker outage means the configs are published again (the device
ignores a version it already applied), never skipped.

The gateway relays envelopes as they are: the device verifies the cloud's signature.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.errors import GatewayError
from gateway.store import Store
from gateway.uplink import read_token
from protocol import config as config_codec
from protocol import topics

log = logging.getLogger("fleetloop.gateway.downlink")

CONFIGS_PATH = "/api/v1/gateway/configs"
CURSOR = "config_revision"

# (topic, payload, retain, timeout_s) -> True once the broker acknowledged it
Publish = Callable[[str, bytes, bool, float], bool]


class DownlinkError(GatewayError):
    """One poll failed; the cursor did not move."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def parse_configs(obj: Any) -> tuple[int, dict[str, bytes], list[str]]:
    """(revision, device -> newest envelope bytes, problems) from a configs response."""
    if not isinstance(obj, dict):
        raise DownlinkError("configs response is not an object")
    revision, configs = obj.get("revision"), obj.get("configs")
    if type(revision) is not int or revision < 0 or not isinstance(configs, list):
        raise DownlinkError("configs response needs revision (int >= 0) and configs (list)")
    latest: dict[str, bytes] = {}
    problems = []
    for item in configs:
        device = item.get("device") if isinstance(item, dict) else None
        envelope = item.get("envelope") if isinstance(item, dict) else None
        if not topics.valid_device_id(device) or not isinstance(envelope, str):
            problems.append(f"config entry without a valid device and envelope: {str(item)[:100]}")
            continue
        payload = envelope.encode()
        if len(payload) > config_codec.MAX_ENVELOPE_BYTES:
            problems.append(f"config for {device} is larger than {config_codec.MAX_ENVELOPE_BYTES} B")
            continue
        latest[str(device)] = payload
    return revision, latest, problems


class Downlink:
    def __init__(self, store: Store, cloud_url: str, token_path: Path, publish: Publish,
                 interval_s: float = 2.0, timeout_s: float = 10.0,
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._url = cloud_url.rstrip("/") + CONFIGS_PATH
        self._token_path = token_path
        self._publish = publish
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._published = 0
        self._refused = 0
        self._last_ok_ms: int | None = None
        self._last_error: str | None = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"revision": self._revision, "published": self._published,
                    "refused": self._refused, "last_ok_ms": self._last_ok_ms,
                    "last_error": self._last_error}

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=self._timeout_s) as http:
            while True:
                try:
                    self.poll_once(http)
                except DownlinkError as exc:
                    with self._lock:
                        repeated = self._last_error == str(exc)
                        self._last_error = str(exc)
                    if not repeated:
                        log.warning("config poll: %s", exc)
                if stop.wait(self._interval_s):
                    return

    def poll_once(self, http: httpx.Client) -> int:
        """Fetch configs after the stored revision, publish them, move the cursor; returns the
        number published."""
        after = self._store.cursor(CURSOR)
        token = read_token(self._token_path)
        if token is None:
            raise DownlinkError(f"no gateway token in {self._token_path}")
        try:
            resp = http.get(self._url, params={"after": after},
                            headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise DownlinkError(f"cloud unreachable: {type(exc).__name__}: {exc}") from exc
        if not resp.is_success:
            raise DownlinkError(f"configs request answered {resp.status_code}: {resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise DownlinkError("configs response is not JSON") from exc
        revision, latest, problems = parse_configs(body)
        for problem in problems:
            log.error("refused a config from the cloud: %s", problem)
        published = 0
        for device, payload in latest.items():
            if not self._publish(topics.topic(device, topics.CONFIG), payload, True, 10.0):
                raise DownlinkError(f"could not publish the config for {device} (broker down?)")
            published += 1
        if revision != after:
            self._store.set_cursor(CURSOR, revision)
        with self._lock:
            self._revision = revision
            self._published += published
            self._refused += len(problems)
            self._last_ok_ms = self._clock_ms()
            self._last_error = "; ".join(problems[-1:]) or None
        if published:
            log.info("published %d config(s), revision %d", published, revision)
        return published
