"""Downlink: signed configs from the cloud are published retained to the device; the revision
cursor moves only after every publish was acknowledged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from gwkit import GATEWAY, Device, FakeCloud, RunningGateway, gateway_settings, wait_for

from gateway.downlink import CURSOR, Downlink, DownlinkError, parse_configs
from gateway.store import Store
from protocol import config as config_codec


def _envelope(home: Path, device: str, version: int, interval_ms: int) -> str:
    key = load_pem_private_key((home / "keys" / "config.key.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    body = {"device": device, "version": version, "issued": 1,
            "settings": {"interval_ms": interval_ms}}
    return config_codec.seal(body, key.sign).decode()


def test_configs_reach_the_device_retained_and_verifiable(
        home: Path, cloud: FakeCloud, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    cloud.configs = [(1, "bike-1", _envelope(home, "bike-1", 1, 1000)),
                     (2, "bike-1", _envelope(home, "bike-1", 2, 2000)),
                     (3, "bike-2", _envelope(home, "bike-2", 1, 500))]
    gw = run_gateway(gateway_settings(home, cloud.url))
    wait_for(lambda: gw.status()["downlink"]["revision"] == 3, 10, "revision 3")
    assert gw.status()["downlink"]["published"] == 2  # only the newest per device
    bike = devices(home, "bike-1", gw.port)  # connects later: the config is retained
    wait_for(lambda: bike.configs, 10, "config delivered")
    pub = (home / "keys" / "config.pub").read_bytes()
    body = config_codec.open_envelope(bike.configs[-1], pub)
    assert body["version"] == 2 and body["settings"] == {"interval_ms": 2000}
    wait_for(lambda: len(cloud.config_requests) >= 3, 5, "more polls")
    assert cloud.config_requests[-1] == 3, cloud.config_requests  # later polls: only new


class FlakyBroker:
    def __init__(self) -> None:
        self.up = False
        self.published: list[tuple[str, bytes, bool]] = []

    def __call__(self, topic: str, payload: bytes, retain: bool, timeout_s: float) -> bool:
        if self.up:
            self.published.append((topic, payload, retain))
        return self.up


def test_the_cursor_waits_for_the_broker(home: Path, cloud: FakeCloud) -> None:
    cloud.configs = [(4, "bike-1", _envelope(home, "bike-1", 1, 1000))]
    store = Store(home / "gateways" / GATEWAY / "gateway.db")
    store.open()
    broker = FlakyBroker()
    down = Downlink(store, cloud.url, home / "gateways" / GATEWAY / "token", broker)
    with httpx.Client() as http:
        with pytest.raises(DownlinkError, match="could not publish"):
            down.poll_once(http)
        assert store.cursor(CURSOR) == 0
        broker.up = True
        assert down.poll_once(http) == 1
        assert store.cursor(CURSOR) == 4
        assert broker.published == [("fleet/bike-1/config", cloud.configs[0][2].encode(), True)]
        assert down.poll_once(http) == 0


def test_malformed_config_responses_are_refused() -> None:
    with pytest.raises(DownlinkError):
        parse_configs({"revision": "7", "configs": []})
    rev, latest, problems = parse_configs({"revision": 9, "configs": [
        {"device": "bike/1", "envelope": "{}"}, {"device": "bike-1", "envelope": "x" * 5000},
        {"device": "bike-2", "envelope": "{}"}]})
    assert rev == 9 and list(latest) == ["bike-2"] and len(problems) == 2
