"""Offers from the cloud to the broker, without a broker: what is published, when, and what is
remembered across a restart (gateway.updates with a recording broker and an in-process cloud),
and how the cloud's offer list is checked entry by entry (gateway.ota_cloud.parse_offers)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import gw_bundles as gb
import pytest
from gwkit import GATEWAY
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ota_cache import BundleCache
from gateway.ota_cloud import OfferEntry, TooLarge, UpdateCloud, UpdateCloudError, parse_offers
from gateway.ota_records import OtaRecords
from gateway.store import Store
from gateway.updates import Updates, UpdatesError

SIZES = {"device/agent.mpy": 900, "device/buffer.mpy": 300}


class Cloud:
    """The three update endpoints in-process (what gateway.ota_cloud.UpdateCloud returns)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.bundles: dict[str, bytes] = {}
        self.downloads: Counter[str] = Counter()
        self.up = True

    def offers(self) -> tuple[list[OfferEntry], list[str]]:
        if not self.up:
            raise UpdateCloudError("cloud unreachable: ConnectError")
        return parse_offers({"offers": self.entries})

    def bundle(self, key: str, limit: int) -> bytes:
        if len(self.bundles[key]) > limit:
            raise TooLarge("too large")
        self.downloads[key] += 1
        return self.bundles[key]

    def manifest(self, version: str, product: str) -> bytes:
        raise UpdateCloudError("no base here")


class Broker:
    def __init__(self) -> None:
        self.up = True
        self.retained: dict[str, bytes] = {}
        self.publishes = 0

    def __call__(self, topic: str, payload: bytes, retain: bool, timeout_s: float) -> bool:
        if self.up:
            assert retain
            self.retained[topic] = payload
            self.publishes += 1
        return self.up


def _updates(home: Path, broker: Broker) -> Updates:
    store = Store(home / "gateways" / GATEWAY / "gateway.db")
    store.open()
    records = OtaRecords(store)
    cache = BundleCache(home / "gateways" / GATEWAY / "updates", 1 << 20,
                        home / "keys" / "release.pub", records)
    cache.open()
    updates = Updates(records, cache, UpdateCloud("http://127.0.0.1:9", home / "none"), broker)
    updates.restore()
    return updates


def test_offers_wait_for_the_broker_and_a_restart_publishes_nothing_again(home: Path) -> None:
    cloud, broker = Cloud(), Broker()
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    cloud.bundles["bike-0.2.0"] = data
    cloud.entries = [gb.entry("bike-1", "bike-0.2.0", data, text)]
    broker.up = False
    updates = _updates(home, broker)
    with pytest.raises(UpdatesError, match="broker down"):
        updates.poll_once(cloud)
    broker.up = True
    assert updates.poll_once(cloud) == 1
    offer = json.loads(broker.retained["fleet/bike-1/update"])
    assert offer == gb.entry("bike-1", "bike-0.2.0", data, text)["offer"]
    assert updates.serving("bike-1") is not None
    assert updates.poll_once(cloud) == 0

    restarted = _updates(home, broker)  # serves at once, before the cloud answers
    assert restarted.serving("bike-1") == updates.serving("bike-1")
    assert restarted.poll_once(cloud) == 0 and broker.publishes == 1
    assert cloud.downloads["bike-0.2.0"] == 1


def test_a_withdrawn_offer_is_cleared_even_across_a_restart(home: Path) -> None:
    cloud, broker = Cloud(), Broker()
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    cloud.bundles["bike-0.2.0"] = data
    cloud.entries = [gb.entry(d, "bike-0.2.0", data, text) for d in ("bike-1", "bike-2")]
    _updates(home, broker).poll_once(cloud)
    cloud.entries = cloud.entries[:1]  # withdrawn while the gateway is down
    cloud.up = False
    restarted = _updates(home, broker)
    with pytest.raises(UpdatesError, match="unreachable"):
        restarted.poll_once(cloud)  # an unreachable cloud changes nothing
    assert broker.retained["fleet/bike-2/update"] != b"" and restarted.serving("bike-2")
    cloud.up = True
    assert restarted.poll_once(cloud) == 1
    assert broker.retained["fleet/bike-2/update"] == b"" and restarted.serving("bike-2") is None
    assert _updates(home, broker).poll_once(cloud) == 0  # and it stays cleared
    assert restarted.status()["offers_cleared"] == 1


def test_an_offer_that_does_not_describe_its_bundle_is_not_published(home: Path) -> None:
    cloud, broker = Cloud(), Broker()
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    cloud.bundles["bike-0.2.0"] = data
    wrong = gb.entry("bike-1", "bike-0.2.0", data, text)
    wrong["offer"] = {**wrong["offer"], "size": 99}  # type: ignore[dict-item]
    cloud.entries = [wrong, gb.entry("bike-2", "bike-0.2.0", data, text)]
    updates = _updates(home, broker)
    assert updates.poll_once(cloud) == 1 and list(broker.retained) == ["fleet/bike-2/update"]
    [problem] = updates.status()["problems"]
    assert problem.startswith("offer for bike-1 refused: offer says size 99, bundle bike-0.2.0")


def test_a_refused_bundle_waits_its_turn_however_often_the_cloud_is_asked(home: Path) -> None:
    cloud, broker = Cloud(), Broker()
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    cloud.bundles["bike-0.2.0"] = data[:-1] + bytes([data[-1] ^ 1])
    cloud.entries = [gb.entry("bike-1", "bike-0.2.0", data, text)]
    updates = _updates(home, broker)
    for _ in range(5):
        assert updates.poll_once(cloud) == 0
    assert cloud.downloads["bike-0.2.0"] == 1 and broker.retained == {}


def test_each_bad_entry_is_skipped_alone() -> None:
    good = {"device": "bike-1", "bundle": "bike-0.2.0", "base": None,
            "offer": {"v": 1, "id": "7e5d06bff8b6862b", "product": "bike", "version": "0.2.0",
                      "size": 300, "rollout": "r-1"}}
    bad = [{**good, "device": "bike/1"}, {**good, "bundle": "../etc"},
           {**good, "base": "1.0"}, {**good, "offer": {**good["offer"], "id": "XYZ"}},
           {**good, "offer": "text"}, {**good, "extra": 1}, [], None, 7,
           {**good, "device": "bike-2", "offer": {**good["offer"], "size": 10**9}}]
    entries, problems = parse_offers({"offers": [*bad, good, {**good, "bundle": "bike-0.3.0"}]})
    assert [(e.device, e.bundle) for e in entries] == [("bike-1", "bike-0.2.0")]
    assert len(problems) == len(bad) + 1 and "offered twice" in problems[-1]
    assert entries[0].payload == (b'{"v":1,"id":"7e5d06bff8b6862b","product":"bike",'
                                  b'"version":"0.2.0","size":300,"rollout":"r-1"}')
    for body in ({}, {"offers": {}}, [], None):
        with pytest.raises(UpdateCloudError):
            parse_offers(body)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=9),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(["device", "bundle", "base", "offer", "v",
                                                       "id", "size", "offers"]), inner,
                                      max_size=5), max_leaves=20))
def test_no_answer_from_the_cloud_crashes_the_parser(body: Any) -> None:
    try:
        entries, problems = parse_offers({"offers": [body]})
    except UpdateCloudError:
        return
    assert len(entries) + len(problems) == 1
