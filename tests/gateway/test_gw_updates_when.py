"""When the gateway pulls its offers (gateway.updates.Updates.run): at once when the cloud's
long-poll says they changed, every safety interval otherwise, and every fixed interval when the
cloud has no long-poll for offers (no watch endpoint, an older watch, a failing one). A failing
long-poll is tried again only after a wait: never in a loop. The cloud's watch is a small HTTP
stand-in here (its real side is tested in tests/cloud and test_gw_updates_longpoll.py); the
offers come from an in-process source, the broker is a recorder."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import gw_bundles as gb
import pytest
from gwkit import GATEWAY, free_port, wait_for

from gateway.longpoll import LongPoll
from gateway.ota_cache import BundleCache
from gateway.ota_cloud import OfferEntry, parse_offers
from gateway.ota_records import OtaRecords
from gateway.store import Store
from gateway.updates import Updates

SIZES = {"device/agent.mpy": 900, "device/buffer.mpy": 300}
TOPIC = "fleet/bike-1/update"


class Offers:
    """The cloud's offers endpoints, in process; counts the pulls."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.bundles: dict[str, bytes] = {}
        self.pulls = 0

    def __enter__(self) -> Offers:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def offers(self) -> tuple[list[OfferEntry], list[str]]:
        self.pulls += 1
        return parse_offers({"offers": self.entries})

    def bundle(self, key: str, limit: int) -> bytes:
        return self.bundles[key]

    def manifest(self, version: str, product: str) -> bytes:
        raise AssertionError("no delta here")


class Watch:
    """GET /api/v1/gateway/watch as `mode` says: "hold" (the real cloud's behaviour: answer
    when `tag` differs from the one sent, or when the wait ends), "500", "404" or "tagless"
    (an older cloud's watch, for configs and revocations only)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.tag = "t0"
        self.requests = 0
        self.cond = threading.Condition()
        self.port = free_port()
        watch = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                code, body = watch.answer(query)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.daemon_threads = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def change(self, tag: str) -> None:
        with self.cond:
            self.tag = tag
            self.cond.notify_all()

    def answer(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.cond:
            self.requests += 1
            if self.mode in ("500", "404"):
                return int(self.mode), {"detail": "no"}
            base = {"config": 0, "configs": False, "revocations": "r"}
            if self.mode == "tagless":
                return 200, base
            sent = query.get("offers")
            self.cond.wait_for(lambda: self.tag != sent, float(query.get("wait", 0)))
            return 200, {**base, "offers": self.tag}

    def stop(self) -> None:
        self.change("stopping")  # ends every held request
        self.server.shutdown()
        self.server.server_close()


class Broker:
    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}

    def __call__(self, topic: str, payload: bytes, retain: bool, timeout_s: float) -> bool:
        self.retained[topic] = payload
        return True


@pytest.fixture
def offers(home: Path) -> Offers:
    source = Offers()
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    source.bundles["bike-0.2.0"] = data
    source.entries = [gb.entry("bike-1", "bike-0.2.0", data, text)]
    return source


@pytest.fixture
def running(home: Path) -> Iterator[Any]:
    """Start Updates.run in a thread against a Watch; stopped (and checked stopped) after."""
    started: list[tuple[threading.Event, threading.Thread, Watch]] = []

    def start(source: Offers, broker: Broker, mode: str, interval_s: float,
              safety_s: float = 60.0) -> tuple[Updates, Watch]:
        watch = Watch(mode)
        store = Store(home / "gateways" / GATEWAY / "gateway.db")
        store.open()
        records = OtaRecords(store)
        cache = BundleCache(home / "gateways" / GATEWAY / "updates", 1 << 20,
                            home / "keys" / "release.pub", records)
        cache.open()
        updates = Updates(records, cache, source, broker,  # type: ignore[arg-type]
                          interval_s=interval_s, safety_s=safety_s,
                          long_poll=LongPoll(watch.url, home / "gateways" / GATEWAY / "token",
                                             hold_s=25.0, timeout_s=5.0))
        stop = threading.Event()
        thread = threading.Thread(target=updates.run, args=(stop,), daemon=True)
        thread.start()
        started.append((stop, thread, watch))
        return updates, watch

    yield start
    for stop, thread, watch in started:
        stop.set()
        thread.join(5)
        watch.stop()
        assert not thread.is_alive(), "the updates loop did not stop"


@pytest.mark.parametrize("mode", ["500", "404", "tagless"])
def test_without_a_working_long_poll_offers_come_by_the_fixed_poll_and_nothing_spins(
        offers: Offers, running: Any, mode: str) -> None:
    broker = Broker()
    updates, watch = running(offers, broker, mode, interval_s=0.25)
    wait_for(lambda: TOPIC in broker.retained, 5, "the offer published")
    offers.entries = []  # withdrawn: cleared at a later poll
    wait_for(lambda: broker.retained[TOPIC] == b"", 5, "the offer cleared by the poll")
    time.sleep(1.5)
    pulls, asked = offers.pulls, watch.requests
    status = updates.status()
    assert pulls >= 5 and not status["long_poll"], status
    if mode == "500":  # asked again once per interval, never in a loop
        assert asked <= pulls + 1, (asked, pulls)
        assert "500" in status["long_poll_error"]
    else:  # no endpoint / no offers in its answer: not asked again for a long while
        assert asked == 1, asked


def test_a_change_wakes_the_pull_at_once_and_the_safety_pull_comes_anyway(
        offers: Offers, running: Any) -> None:
    broker = Broker()
    entries, offers.entries = offers.entries, []
    updates, watch = running(offers, broker, "hold", interval_s=60.0, safety_s=60.0)
    wait_for(lambda: updates.status()["long_poll"] and offers.pulls == 1, 5, "holding")
    offers.entries = entries
    watch.change("t1")
    wait_for(lambda: TOPIC in broker.retained, 5, "the offer, long before any poll")
    offers.entries = []
    watch.change("t2")
    wait_for(lambda: broker.retained[TOPIC] == b"", 5, "the offer cleared at once")
    status = updates.status()
    assert (offers.pulls, status["wakes"], status["long_poll_error"]) == (3, 2, None), status
    # The held requests: one to learn the tag, then one per change, plus at most one on the
    # way (a request ended by the change is answered, then the next one is held).
    assert watch.requests <= 4, watch.requests

    safe_broker = Broker()
    quiet = Offers()
    quiet_updates, quiet_watch = running(quiet, safe_broker, "hold", interval_s=60.0,
                                         safety_s=0.5)
    time.sleep(2.0)
    assert quiet_updates.status()["wakes"] == 0
    assert 3 <= quiet.pulls <= 6, quiet.pulls  # one per safety interval, with no change
    assert quiet_watch.requests <= quiet.pulls + 2, (quiet_watch.requests, quiet.pulls)

