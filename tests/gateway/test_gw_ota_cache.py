"""The update cache: one cloud download per bundle (across restarts too), only verified bundles
kept, refusals with a reason and a growing wait, a byte budget kept by evicting the least
recently used bundles no offer needs."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import gw_bundles as gb
import pytest
from gwkit import GATEWAY

from gateway.ota_cache import BundleCache
from gateway.ota_cloud import TooLarge
from gateway.ota_records import OtaRecords
from gateway.store import Store

SIZES = {"device/agent.mpy": 1300, "device/buffer.mpy": 2100, "protocol/ota.mpy": 10}


class Source:
    """Stands in for the cloud's bundle and manifest endpoints (gateway.ota_cloud)."""

    def __init__(self) -> None:
        self.bundles: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.downloads: Counter[str] = Counter()

    def bundle(self, key: str, limit: int) -> bytes:
        data = self.bundles[key]
        if len(data) > limit:
            raise TooLarge(f"bundle {key} is {len(data)} bytes, more than {limit}")
        self.downloads[key] += 1
        return data

    def manifest(self, version: str, product: str) -> bytes:
        return self.manifests[(product, version)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(home: Path, clock: Clock, budget: int = 1 << 20) -> BundleCache:
    store = Store(home / "gateways" / GATEWAY / "gateway.db")
    store.open()
    cache = BundleCache(home / "gateways" / GATEWAY / "updates", budget,
                        home / "keys" / "release.pub", OtaRecords(store), 30.0, 1800.0, clock)
    cache.open()
    return cache


def test_a_bundle_is_downloaded_once_and_survives_a_restart(home: Path) -> None:
    src, clock = Source(), Clock()
    data, text = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    src.bundles["bike-0.2.0"] = data
    cache = _cache(home, clock)
    ready = cache.ensure("bike-0.2.0", src, {"bike-0.2.0"})
    assert ready is not None and ready.offer_id == gb.offer_id(text)
    assert ready.files[0] == gb.file0(data) and ready.files[1] == gb.some_files(1, SIZES)[
        "device/agent.mpy"]
    assert cache.ensure("bike-0.2.0", src, {"bike-0.2.0"}) is ready
    again = _cache(home, clock)  # a restart: files and counts come from disk
    assert again.ensure("bike-0.2.0", src, {"bike-0.2.0"}) == ready
    assert src.downloads["bike-0.2.0"] == 1
    st = again.status()
    assert st["cloud_downloads"] == 1
    assert st["bundles"] == [{"key": "bike-0.2.0", "bytes": len(data), "downloads": 1,
                              "in_use": True}]


def test_a_tampered_bundle_is_refused_and_tried_again_only_after_a_wait(home: Path) -> None:
    src, clock = Source(), Clock()
    data, _ = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    bad = bytearray(data)
    bad[-5] ^= 1  # a byte of the last file
    src.bundles["bike-0.2.0"] = bytes(bad)
    cache = _cache(home, clock)
    for _ in range(5):
        assert cache.ensure("bike-0.2.0", src, {"bike-0.2.0"}) is None
    assert src.downloads["bike-0.2.0"] == 1
    [refused] = cache.status()["refused"]
    assert "sha256 does not match" in refused["reason"] and refused["retry_in_s"] >= 15
    assert cache.status()["bundles"] == []  # nothing kept
    clock.now += 31
    src.bundles["bike-0.2.0"] = data  # the cloud got a good copy
    assert cache.ensure("bike-0.2.0", src, {"bike-0.2.0"}) is not None
    assert src.downloads["bike-0.2.0"] == 2 and cache.status()["refused"] == []


def test_a_delta_is_verified_over_its_base_whose_signature_counts_too(home: Path) -> None:
    src, clock = Source(), Clock()
    old_files = gb.some_files(1, SIZES)
    base_data, base_text = gb.full(home, "bike", "0.1.0", old_files)
    new_files = {**old_files, "device/agent.mpy": b"changed module"}
    data, text = gb.delta(home, base_text, "bike", "0.2.0", new_files)
    src.bundles["bike-0.2.0-from-0.1.0"] = data
    forged = bytearray(gb.file0(base_data))
    forged[0] ^= 1  # the base's signature
    src.manifests[("bike", "0.1.0")] = bytes(forged)
    cache = _cache(home, clock)
    assert cache.ensure("bike-0.2.0-from-0.1.0", src, set()) is None
    assert "base 0.1.0: bad signature" in cache.status()["refused"][0]["reason"]
    src.manifests[("bike", "0.1.0")] = gb.file0(base_data)
    clock.now += 31
    ready = cache.ensure("bike-0.2.0-from-0.1.0", src, set())
    assert ready is not None and ready.kind == "delta" and ready.base == "0.1.0"
    assert ready.offer_id == gb.offer_id(text)  # the id of the whole new manifest
    assert sorted(ready.files) == [0, 1]  # file 0 (the patch) and the one changed file
    assert ready.files[1] == b"changed module"
    # a restart verifies it again from disk, with the base kept beside it
    assert _cache(home, clock).load("bike-0.2.0-from-0.1.0") == ready


def test_the_budget_evicts_the_least_recently_used_bundle_no_offer_needs(home: Path) -> None:
    src, clock = Source(), Clock()
    sizes = {"device/agent.mpy": 30_000}
    for i, version in enumerate(("0.2.0", "0.3.0", "0.4.0")):
        src.bundles[f"bike-{version}"], _ = gb.full(home, "bike", version, gb.some_files(i, sizes))
    one = len(src.bundles["bike-0.2.0"])
    cache = _cache(home, clock, budget=2 * one + 100)
    assert cache.ensure("bike-0.2.0", src, {"bike-0.2.0"})
    assert cache.ensure("bike-0.3.0", src, {"bike-0.2.0", "bike-0.3.0"})
    os.utime(home / "gateways" / GATEWAY / "updates" / "bike-0.2.0.flb", (1, 1))  # oldest
    # 0.2.0 is the oldest but still offered: 0.3.0 goes
    assert cache.ensure("bike-0.4.0", src, {"bike-0.2.0", "bike-0.4.0"})
    assert [b["key"] for b in cache.status()["bundles"]] == ["bike-0.2.0", "bike-0.4.0"]
    assert cache.status()["evicted"] == 1
    assert cache.status()["bytes"] <= cache.status()["budget_bytes"]


def test_a_bundle_that_cannot_fit_is_refused_with_the_reason(home: Path) -> None:
    src, clock = Source(), Clock()
    src.bundles["bike-0.2.0"], _ = gb.full(home, "bike", "0.2.0",
                                           gb.some_files(1, {"device/agent.mpy": 30_000}))
    src.bundles["bike-0.3.0"], _ = gb.full(home, "bike", "0.3.0",
                                           gb.some_files(2, {"device/agent.mpy": 30_000}))
    cache = _cache(home, clock, budget=len(src.bundles["bike-0.2.0"]) + 1000)
    assert cache.ensure("bike-0.2.0", src, {"bike-0.2.0"})
    assert cache.ensure("bike-0.3.0", src, {"bike-0.2.0", "bike-0.3.0"}) is None
    reason = cache.status()["refused"][0]["reason"]
    assert "does not fit the cache" in reason and "held by bundles current offers use" in reason
    assert src.downloads["bike-0.3.0"] == 0  # refused before its bytes were read


def test_a_cached_file_changed_on_disk_is_dropped_and_fetched_again(home: Path) -> None:
    src, clock = Source(), Clock()
    src.bundles["bike-0.2.0"], _ = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    assert _cache(home, clock).ensure("bike-0.2.0", src, set())
    path = home / "gateways" / GATEWAY / "updates" / "bike-0.2.0.flb"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    cache = _cache(home, clock)
    assert cache.load("bike-0.2.0") is None and not path.exists()
    assert cache.ensure("bike-0.2.0", src, set()) is not None
    assert src.downloads["bike-0.2.0"] == 2 and cache.status()["cloud_downloads"] == 2


def test_without_the_release_key_every_bundle_is_refused_saying_so(home: Path) -> None:
    src, clock = Source(), Clock()
    src.bundles["bike-0.2.0"], _ = gb.full(home, "bike", "0.2.0", gb.some_files(1, SIZES))
    (home / "keys" / "release.pub").unlink()
    cache = _cache(home, clock)
    assert cache.ensure("bike-0.2.0", src, set()) is None
    assert "no release public key" in cache.status()["refused"][0]["reason"]
    assert src.downloads["bike-0.2.0"] == 0


@pytest.mark.parametrize("key", ["../x", ".hidden", "a/b", "", "x" * 81])
def test_unsafe_keys_never_name_a_file(home: Path, key: str) -> None:
    src, clock = Source(), Clock()
    cache = _cache(home, clock)
    assert cache.ensure(key, src, set()) is None
    assert not any((home / "gateways" / GATEWAY / "updates").iterdir())
