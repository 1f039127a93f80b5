"""The back-pressure hint: its value (fixed, or computed from the known devices), published
retained on fleet/hint by the real gateway through its real Mosquitto, only when it changed or
the broker is a new one, and shown in the status."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from gwkit import Device, FakeCloud, RunningGateway, gateway_settings, wait_for

from gateway.hint import HintPublisher, computed_hint_ms
from protocol import hint

GatewayStarter = Callable[..., RunningGateway]
DeviceMaker = Callable[..., Device]


@pytest.mark.parametrize("known, rate, expected", [
    (0, 100, 0),  # nobody to spread: no hint
    (1, 100, 10),
    (150, 100, 1500),
    (1, 3, 334),  # rounded up: never faster than the rate
    (100_000, 100, 600_000),  # exactly the cap
    (100_001, 100, hint.MAX_HINT_MS),  # capped
    (10**9, 1, hint.MAX_HINT_MS),
])
def test_the_computed_hint_spreads_the_known_devices_over_the_rate(
        known: int, rate: int, expected: int) -> None:
    assert computed_hint_ms(known, rate) == expected
    hint.encode(expected)  # always a value devices accept


class _Broker:
    """What the publisher sees of the gateway's MQTT link, by hand."""

    def __init__(self) -> None:
        self.connection: int | None = 1
        self.up = True
        self.published: list[bytes] = []

    def publish(self, topic: str, payload: bytes, retain: bool, timeout_s: float) -> bool:
        assert topic == hint.TOPIC and retain
        if not self.up:
            return False
        self.published.append(payload)
        return True


def test_the_hint_is_published_once_per_value_and_again_for_a_new_broker() -> None:
    link, known = _Broker(), [0]
    pub = HintPublisher(link.publish, lambda: known[0], lambda: link.connection,
                        reconnect_rate=100)
    pub.compute()
    assert pub.publish_if_needed() and not pub.publish_if_needed()
    known[0] = 250
    assert not pub.publish_if_needed()  # the value is recomputed on its own schedule only
    pub.compute()
    pub.compute()
    link.up = False
    assert not pub.publish_if_needed()
    assert pub.status()["last_error"] and pub.status()["min_reconnect_ms"] == 0
    link.up = True
    assert pub.publish_if_needed() and not pub.publish_if_needed()
    link.connection = None  # the gateway lost its broker: nothing to publish to
    assert not pub.publish_if_needed()
    link.connection = 2  # a new connection: the broker may have lost what it held
    assert pub.publish_if_needed()
    assert link.published == [hint.encode(0), hint.encode(2500), hint.encode(2500)]
    st = pub.status()
    assert (st["min_reconnect_ms"], st["source"], st["known_devices"], st["published"]) == (
        2500, "computed", 250, 3)
    assert st["last_error"] is None


def test_a_fixed_hint_ignores_the_known_devices() -> None:
    link = _Broker()
    pub = HintPublisher(link.publish, lambda: 10**6, lambda: link.connection, fixed_ms=0)
    pub.compute()
    assert pub.publish_if_needed()
    assert link.published == [hint.encode(0)] and pub.status()["source"] == "setting"
    with pytest.raises(ValueError):
        HintPublisher(link.publish, lambda: 0, lambda: 1, fixed_ms=hint.MAX_HINT_MS + 1)


def test_the_gateway_publishes_the_computed_hint_as_devices_become_known(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter,
        devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url, reconnect_rate=1, hint_interval_s=0.2))
    listener = devices(home, "mirror-1", gw.port, subscribe=[hint.TOPIC])
    wait_for(lambda: listener.received, 5, "the first hint")
    assert listener.received == [(hint.TOPIC, hint.encode(0))]  # no device known yet
    for name in ("bike-1", "bike-2"):
        bike = devices(home, name, gw.port)
        bike.send(1)
        wait_for(lambda b=bike: b.acked == 1, 10, f"{name} acked")
    wait_for(lambda: gw.status()["hint"]["min_reconnect_ms"] == 2000, 5, "hint for 2 devices")
    time.sleep(0.6)  # three more recomputations: same value, so nothing published
    # 0, then 2000 (and 1000 between when a recomputation fell between the two bikes): each
    # value once, only when it changed.
    values = [hint.decode(p) for _, p in listener.received]
    assert values in ([0, 2000], [0, 1000, 2000]), values
    st = gw.status()["hint"]
    assert st["source"] == "computed" and st["known_devices"] == 2
    assert st["reconnect_rate"] == 1 and st["published"] == len(values)
    assert st["topic"] == hint.TOPIC
    late = devices(home, "engine-1", gw.port, subscribe=[hint.TOPIC])
    wait_for(lambda: late.received, 5, "the retained hint")
    assert late.received == [(hint.TOPIC, hint.encode(2000))]


def test_a_fixed_hint_is_published_again_to_a_restarted_broker(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter,
        devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url, min_reconnect_ms=1500,
                                      hint_interval_s=0.2))
    st = wait_for(lambda: (h := gw.status()["hint"])["published"] == 1 and h, 5, "hint published")
    assert (st["min_reconnect_ms"], st["source"], st["setting_ms"]) == (1500, "setting", 1500)
    broker = gw.status()["broker"]
    # Persistence is off the table: the broker loses its saved state with the kill below.
    for path in (gw.settings.broker_dir / "data").iterdir():
        path.unlink()
    os.kill(broker["pid"], signal.SIGKILL)
    wait_for(lambda: (s := gw.status())["broker"]["pid"] != broker["pid"]
             and s["hint"]["published"] == 2, 15, "hint published to the new broker")
    dev = devices(home, "bike-1", gw.port, subscribe=[hint.TOPIC])
    wait_for(lambda: dev.received, 5, "the retained hint")
    assert dev.received == [(hint.TOPIC, hint.encode(1500))]
