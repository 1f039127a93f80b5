"""Revocation on real parts: cloud, gateway, its Mosquitto, the factory's `fw crl`, and a real
MQTT client holding the revoked device's certificate."""

from __future__ import annotations

import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from fleetloop.stack import CLI, Stack, wait_records

pytestmark = pytest.mark.e2e


def publish_as(stack: Stack, device_id: str, payload: bytes) -> None:
    """One QoS 1 publish on the device's telemetry topic from a fresh connection."""
    client = stack.mqtt_client(device_id)
    client.connect("localhost", stack.mqtt_port)
    client.loop_start()
    try:
        client.publish(f"fleet/{device_id}/telemetry", payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()



def connack(stack: Stack, device_id: str, timeout: float = 5.0) -> int | None:
    """The CONNACK reason code the broker gives `device_id`'s certificate; None: none came
    (the TLS handshake refused it, or the connection was dropped)."""
    client = stack.mqtt_client(device_id)
    got: dict[str, int] = {}
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: object, flags: object, reason: mqtt.ReasonCode,
                   props: object) -> None:
        got["rc"] = reason.value
        done.set()

    client.on_connect = on_connect
    try:
        client.connect("localhost", stack.mqtt_port)
    except OSError:  # the handshake refused it outright
        return None
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got.get("rc")


def test_a_revoked_device_gets_no_connack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETLOOP_REVOCATION_POLL_S", "0.5")
    stack.start_path(["bike-1", "bike-2"])
    stack.register_device("bike-1", "bike")  # fw enrol: sends the certificate's serial
    stack.register_device("bike-2", "bike")
    assert connack(stack, "bike-1") == 0 and connack(stack, "bike-2") == 0
    publish_as(stack, "bike-1", stack.signed_record("bike-1", 1, 7))
    wait_records(stack, "bike-1", 1)

    with stack.admin() as admin:
        r = admin.post("/api/v1/devices/bike-1/revoke", json={"reason": "stolen"})
        assert r.status_code == 200, r.text
    # Before any CRL: the gateway knows the list and drops its messages.
    stack.wait_until(lambda: (stack.gateway_status() or {}).get("revocations", {})
                     .get("revoked") == 1, timeout=20, what="the gateway to learn the revocation")
    rejected = stack.gateway_status()["ingest"]["rejected"]  # type: ignore[index]
    publish_as(stack, "bike-1", stack.signed_record("bike-1", 2, 8))
    stack.wait_until(lambda: stack.gateway_status()["ingest"]["rejected"] > rejected,
                     timeout=10, what="the gateway to refuse the revoked device's record")

    # The factory signs the CRL with the device CA key and uploads it.
    out = subprocess.run([*CLI, "fw", "crl", "--home", str(stack.home), "--cloud",
                          stack.cloud_url], env=stack.env(), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "revoking 1 device(s): bike-1" in out.stdout

    def crl_in_use() -> bool:
        status = stack.gateway_status() or {}
        return bool(status.get("revocations", {}).get("crl_number")
                    and status.get("broker", {}).get("up"))

    stack.wait_until(crl_in_use, timeout=30, what="the gateway's broker restarted with the CRL")
    assert "crlfile" in (stack.home / "gateways" / stack.gateway_id / "broker" /
                         "mosquitto.conf").read_text()
    assert connack(stack, "bike-1") is None  # refused at the broker
    assert connack(stack, "bike-2") == 0  # the others still connect
    time.sleep(1)
    assert [r["seq"] for r in stack.telemetry("bike-1")] == [1]
