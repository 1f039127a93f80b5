"""Consent the customer controls, checked where data leaves the product: at the broker.

Real cloud, gateway and Mosquitto, a real MicroPython bike, and a real MQTT subscriber next to
the gateway (an observer identity the gateway's ACL lets read every device's topics) that
records every byte the bike publishes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fleetloop.stack import Stack, wait_records

pytestmark = pytest.mark.e2e
OBSERVER = "tap-1"


class Tap:
    """A subscriber on the gateway's broker with the observer's certificate: every telemetry
    message of `device_id`, decoded, in arrival order."""

    def __init__(self, stack: Stack, device_id: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = stack.mqtt_client(OBSERVER)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            f"fleet/{device_id}/telemetry", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("localhost", stack.mqtt_port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the observer could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:  # a backlog comes in frames: records one a line (protocol.frame)
            self.messages.extend(json.loads(line) for line in msg.payload.splitlines())

    def seen(self) -> list[dict[str, Any]]:
        """Each record once (re-sends dropped), in seq order."""
        with self._lock:
            unique = {m["s"]: m for m in self.messages}
        return [unique[s] for s in sorted(unique)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def consent_seq(records: list[dict[str, Any]], tier: str) -> int | None:
    return next((r["s"] for r in records if r.get("c", {}).get("tier") == tier), None)


def test_at_tier_usage_no_heart_rate_leaves_the_bike(stack: Stack) -> None:
    """New bike: nothing leaves it at `essential`. The owner grants `usage`: cadence and power
    go out, heart rate never does. Granting `personal` brings heart rate (so the observer would
    have seen it)."""
    stack.observers = [OBSERVER]
    stack.start_path(["bike-1", OBSERVER])
    tap = Tap(stack, "bike-1")
    try:
        stack.start_device("bike-1", "bike", interval_ms=100, consent=None)
        stack.wait_until(lambda: (stack.home / "devices" / "bike-1" / "identity.json").is_file(),
                         what="bike-1 provisioned")
        time.sleep(3)  # ~30 samples at essential
        assert tap.seen() == [], "a device at essential published telemetry"

        stack.grant_consent("bike-1", "usage")
        stack.wait_until(lambda: len(tap.seen()) >= 20, timeout=30,
                         what="20 records of bike-1 at the broker")
        stack.grant_consent("bike-1", "personal")
        stack.wait_until(lambda: any("heart_rate" in r.get("m", {}) for r in tap.seen()),
                         timeout=30, what="heart rate once personal is granted")
        seen = tap.seen()
    finally:
        tap.close()
    usage_at, personal_at = consent_seq(seen, "usage"), consent_seq(seen, "personal")
    assert usage_at == 1 and personal_at is not None
    at_usage = [r for r in seen if usage_at < r["s"] < personal_at]
    assert len(at_usage) >= 19
    assert all("heart_rate" not in r["m"] and "cadence" in r["m"] for r in at_usage)
    assert [r["c"]["origin"] for r in seen if "c" in r] == ["device", "device"]

    # The cloud holds the same stream: consent records in it, no heart rate before `personal`.
    stored = wait_records(stack, "bike-1", personal_at + 1)
    assert [r["seq"] for r in stored if r.get("consent")] == [usage_at, personal_at]
    assert not any("heart_rate" in r["m"] for r in stored if r["seq"] < personal_at)
    device = stack.cloud_devices()[0]
    assert device["consent"] == "personal"


def test_after_an_opt_out_the_cloud_holds_no_personal_field(stack: Stack) -> None:
    """The owner opts out of `personal` from their account while the bike's records with heart
    rate still wait on the bike (its gateway is down). The cloud deletes the heart rate it holds
    at once, with an audit entry; the records sampled before the opt-out that arrive afterwards
    are stored without it; the bike applies the signed narrowing and stops sampling it."""
    stack.start_path(["bike-1"])
    stack.start_device("bike-1", "bike", interval_ms=100)
    before = wait_records(stack, "bike-1", 12)
    assert any("heart_rate" in r["m"] for r in before)

    assert stack.gateway is not None
    # The site's gateway goes down (the bike keeps sampling into its buffer). It ends by itself
    # on SIGTERM although the bike keeps sending: what was queued is committed, the rest stays
    # in the broker's session; no SIGKILL needed (-9).
    assert stack.gateway.stop() == 0
    time.sleep(2)
    with stack.admin() as admin:
        resp = admin.put("/api/v1/devices/bike-1/consent", json={"tier": "usage"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["tier"] == "usage"
        assert admin.put("/api/v1/devices/bike-1/consent",
                         json={"tier": "personal"}).status_code == 409  # only the owner widens
    held = stack.telemetry("bike-1")
    assert len(held) >= 12 and not any("heart_rate" in r["m"] for r in held)
    last_before = max(r["seq"] for r in held)

    stack.start_gateway()

    def narrowed_on_the_bike() -> list[dict[str, Any]] | None:
        rows = stack.telemetry("bike-1")
        cloud_consent = [r for r in rows if (r.get("consent") or {}).get("origin") == "cloud"]
        if not cloud_consent:
            return None
        after = [r for r in rows if r["seq"] > cloud_consent[0]["seq"] and not r.get("consent")]
        return rows if len(after) >= 5 else None

    rows = stack.wait_until(narrowed_on_the_bike, timeout=60,
                            what="bike-1 to apply the narrowing and send on")
    late = [r for r in rows if r["seq"] > last_before and not r.get("consent")]
    assert len(late) >= 15  # sampled with heart rate while the gateway was down, stored without
    assert not any("heart_rate" in r["m"] for r in rows)
    assert all("cadence" in r["m"] for r in late)

    with stack.admin() as admin:
        view = admin.get("/api/v1/devices/bike-1/consent").json()
    assert view["tier"] == "usage"
    deletions = [a for a in view["audit"] if a["origin"] == "cloud" and a["rows"] > 0]
    assert deletions and "heart_rate" in deletions[-1]["fields"]
