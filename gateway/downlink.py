"""Cloud -> devices: poll the cloud for new signed configs and publish each one retained, QoS 1,
on fleet/<device>/config. The revision cursor is persisted only after the broker acknowledged
every publish, so a crash or a broker outage means the configs are published again (the device
ignores a version it already applied), never skipped.

The gateway relays envelopes as they are: the device verifies the cloud's signature.

Between polls the gateway holds a long-poll open (gateway.longpoll: GET
/api/v1/gateway/watch?config=<revision>): the cloud answers as soon as configs of this
gateway's devices newer than that revision wait, and the gateway fetches them at once. When the
long-poll is off or fails (an older cloud, the cloud away), it polls every `interval_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.cloud_get import get_json
from gateway.errors import GatewayError
from gateway.longpoll import LongPoll, LongPollError, NoLongPoll
from gateway.store import Store
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
                 clock_ms: Callable[[], int] = _now_ms,
                 long_poll: LongPoll | None = None) -> None:
        self._long_poll = long_poll
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
                    self._note(exc)
                if self._wait_for_change(stop):
                    continue
                if stop.wait(self._interval_s):
                    return

    def _wait_for_change(self, stop: threading.Event) -> bool:
        """Hold the long-poll until configs newer than the stored revision wait (True); False
        when it is off, fails, or the gateway stops."""
        if self._long_poll is None or not self._long_poll.enabled:
            return False
        after = self._store.cursor(CURSOR)
        try:
            return self._long_poll.wait_for({"config": after},
                                            lambda answer: bool(answer.get("configs")), stop)
        except LongPollError as exc:
            if isinstance(exc, NoLongPoll):  # an older cloud: the fixed polls are no fault
                log.info("config downlink: %s", exc)
            else:
                self._note(exc)
            return False

    def _note(self, exc: GatewayError) -> None:
        with self._lock:
            repeated = self._last_error == str(exc)
            self._last_error = str(exc)
        if not repeated:
            log.warning("config poll: %s", exc)

    def poll_once(self, http: httpx.Client) -> int:
        """Fetch configs after the stored revision, publish them, move the cursor; returns the
        number published."""
        after = self._store.cursor(CURSOR)
        body = get_json(http, self._url, self._token_path, "configs", DownlinkError,
                        {"after": after})
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
