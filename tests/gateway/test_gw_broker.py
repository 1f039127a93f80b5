"""The gateway's Mosquitto as a real process: mTLS + ACL enforced, stale broker replaced,
restarted when it dies."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gwkit import GATEWAY, Device, free_port, wait_for
from paho.mqtt.enums import CallbackAPIVersion

from gateway.broker import Broker
from gateway.broker_config import BrokerConfig, current_user, find_mosquitto, write_config
from gateway.errors import BrokerError
from gateway.keys import GatewayKeys
from gateway.procs import pid_alive, port_accepts
from gateway.worker import Worker
from protocol import hint


def _config(home: Path) -> BrokerConfig:
    return BrokerConfig(directory=home / "gateways" / GATEWAY / "broker", bind="127.0.0.1",
                        port=free_port(), keys=GatewayKeys.under(home, GATEWAY),
                        gateway_id=GATEWAY, user=current_user())


@pytest.fixture
def broker(home: Path) -> Iterator[Broker]:
    b = Broker(_config(home), find_mosquitto())
    b.start()
    yield b
    b.stop()


def _gateway_subscriber(home: Path, port: int, topic: str = "fleet/#") -> tuple[mqtt.Client,
                                                                               list[str]]:
    keys = home / "keys"
    got: list[str] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(keys / "ca.crt.pem"),
                   certfile=str(keys / "gateways" / GATEWAY / "mqtt.crt.pem"),
                   keyfile=str(keys / "gateways" / GATEWAY / "mqtt.key.pem"))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    client.on_message = lambda c, u, m: got.append(f"{m.topic} {m.payload.decode()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10)
    return client, got


def test_device_cannot_write_another_devices_topics(
        home: Path, broker: Broker, devices: Callable[..., Device]) -> None:
    """A denied publish is PUBACKed (MQTT 3.1.1), so only the subscriber can tell. Mosquitto
    2.0.11 also drops the connection after a denied QoS 1 publish: one connection per try."""
    port = broker.config.port
    spy, got = _gateway_subscriber(home, port)
    try:
        for topic in ("fleet/bike-2/telemetry", "fleet/bike-2/status", "fleet/bike-1/ack",
                      "fleet/bike-1/config", "fleet/gw-1/telemetry", "other/topic"):
            devices(home, "bike-1", port).publish(topic, b"forged")
        devices(home, "bike-1", port).publish("fleet/bike-1/telemetry", b"mine")
        wait_for(lambda: "fleet/bike-1/telemetry mine" in got, 5, "own message")
        time.sleep(0.3)
        assert got == ["fleet/bike-1/telemetry mine"]
    finally:
        spy.disconnect()
        spy.loop_stop()


def test_device_reads_only_its_own_downlink(
        home: Path, broker: Broker, devices: Callable[..., Device]) -> None:
    port = broker.config.port
    bike = devices(home, "bike-1", port, subscribe=["fleet/#", "fleet/+/ack"])
    other = devices(home, "bike-2", port)
    other.publish("fleet/bike-2/telemetry", b"theirs")
    spy, _ = _gateway_subscriber(home, port, "fleet/none")
    try:
        for dev in ("bike-1", "bike-2"):
            spy.publish(f"fleet/{dev}/ack", b'{"v":1,"seq":1}', qos=1)
        wait_for(lambda: bike.received, 5, "bike-1's ack")
        time.sleep(0.3)
        assert [t for t, _ in bike.received] == ["fleet/bike-1/ack"]
    finally:
        spy.disconnect()
        spy.loop_stop()


def test_updates_a_device_asks_only_for_itself_and_hears_only_its_own(
        home: Path, broker: Broker, devices: Callable[..., Device]) -> None:
    """Update offers and chunks are per device: bike-1 cannot read bike-2's, nor fetch in its
    name (the gateway serves whoever the fetch topic names)."""
    port = broker.config.port
    bike = devices(home, "bike-1", port, subscribe=[
        "fleet/bike-1/update", "fleet/bike-1/chunk", "fleet/bike-2/update",
        "fleet/bike-2/chunk", "fleet/+/chunk"])
    spy, got = _gateway_subscriber(home, port, "fleet/+/fetch")
    try:
        for dev in ("bike-2", "bike-1"):
            spy.publish(f"fleet/{dev}/chunk", f"chunk for {dev}".encode(), qos=1)
            spy.publish(f"fleet/{dev}/update", f"offer for {dev}".encode(), qos=1)
        wait_for(lambda: len(bike.received) >= 2, 5, "bike-1's own chunk and offer")
        time.sleep(0.3)
        assert sorted(p.decode() for _, p in bike.received) == ["chunk for bike-1",
                                                                "offer for bike-1"]
        bike.client.disconnect()  # the connections below take its client id
        bike.client.loop_stop()
        # QoS 1 so the broker has handled (denied) it when the call returns; the broker then
        # drops that connection, so the own fetch goes on a new one.
        devices(home, "bike-1", port, subscribe=[]).publish("fleet/bike-2/fetch", b"forged")
        devices(home, "bike-1", port, subscribe=[]).publish("fleet/bike-1/fetch", b"mine")
        wait_for(lambda: got, 5, "bike-1's own fetch")
        time.sleep(0.3)
        assert got == ["fleet/bike-1/fetch mine"]
    finally:
        spy.disconnect()
        spy.loop_stop()


def test_a_certificate_cannot_take_another_devices_client_id(
        home: Path, broker: Broker, devices: Callable[..., Device]) -> None:
    port = broker.config.port
    real = devices(home, "bike-2", port)
    devices(home, "bike-2", port, cert_of="bike-1")  # bike-1's cert claiming client id bike-2
    time.sleep(0.5)
    assert real.client.is_connected()


def test_a_client_without_certificate_is_refused(home: Path, broker: Broker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(home / "keys" / "ca.crt.pem"), cert_reqs=ssl.CERT_REQUIRED)
    with pytest.raises((ssl.SSLError, OSError, mqtt.WebsocketConnectionError)):
        client.connect("127.0.0.1", broker.config.port)
        client.loop(timeout=1)
        client.loop(timeout=1)
        if not client.is_connected():
            raise OSError("not connected")


def test_a_stale_broker_of_ours_is_replaced(home: Path) -> None:
    cfg = _config(home)
    write_config(cfg)
    stale = subprocess.Popen([find_mosquitto(), "-c", str(cfg.conf_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    fresh = Broker(cfg, find_mosquitto())
    try:
        wait_for(lambda: port_accepts("127.0.0.1", cfg.port), 10, "stale broker up")
        wait_for(lambda: cfg.pid_path.exists() and cfg.pid_path.read_text().strip(), 5,
                 "pid file")
        fresh.start()
        stale.wait(5)  # it was terminated (we are its parent here, so reap it)
        status = fresh.status()
        assert status.up and status.pid != stale.pid
        assert status.replaced_stale == stale.pid
        assert cfg.pid_path.read_text().strip() == str(status.pid)
    finally:
        fresh.stop()
        if stale.poll() is None:
            stale.kill()
            stale.wait()


def test_a_foreign_process_in_the_pid_file_is_left_alone(home: Path) -> None:
    cfg = _config(home)
    cfg.directory.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    cfg.pid_path.write_text(f"{sleeper.pid}\n")
    b = Broker(cfg, find_mosquitto())
    try:
        b.start()
        assert sleeper.poll() is None and b.status().replaced_stale is None
    finally:
        b.stop()
        sleeper.kill()
        sleeper.wait()


def test_the_broker_is_restarted_when_it_dies(broker: Broker) -> None:
    watch = Worker("broker-watch", broker.run)
    watch.start()
    try:
        first = broker.status().pid
        assert first is not None
        os.kill(first, signal.SIGKILL)

        def restarted() -> Any:
            st = broker.status()
            return st.up and st.pid != first and st.restarts == 1

        wait_for(restarted, 15, "broker restarted")
        assert port_accepts("127.0.0.1", broker.config.port)
        assert not pid_alive(first)
    finally:
        watch.stop()


def test_a_port_in_use_is_a_clean_error(home: Path) -> None:
    cfg = _config(home)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", cfg.port))
        sock.listen()  # the port accepts, but it is not our broker that listens
        b = Broker(cfg, find_mosquitto())
        try:
            with pytest.raises(BrokerError, match="(?s)exited .*Address already in use"):
                b.start()
        finally:
            b.stop()


def test_every_device_reads_the_hint_and_none_can_write_it(
        home: Path, broker: Broker, devices: Callable[..., Device]) -> None:
    """fleet/hint: the gateway's retained hint reaches every device; a device's own publish
    there is denied, so what the others read stays the gateway's."""
    port = broker.config.port
    spy, _ = _gateway_subscriber(home, port, "fleet/none")
    try:
        spy.publish(hint.TOPIC, hint.encode(1500), qos=1, retain=True).wait_for_publish(5)
        bike = devices(home, "bike-1", port, subscribe=[hint.TOPIC])
        wait_for(lambda: bike.received, 5, "the retained hint")
        assert bike.received == [(hint.TOPIC, hint.encode(1500))]
        for forged in (hint.encode(hint.MAX_HINT_MS), b"soon"):
            devices(home, "bike-2", port).publish(hint.TOPIC, forged, retain=True)
            devices(home, "bike-2", port).publish(hint.TOPIC, forged, retain=False)
        mirror = devices(home, "mirror-1", port, subscribe=[hint.TOPIC])
        wait_for(lambda: mirror.received, 5, "the retained hint")
        time.sleep(0.3)
        assert mirror.received == [(hint.TOPIC, hint.encode(1500))]
        assert bike.received == [(hint.TOPIC, hint.encode(1500))]
    finally:
        spy.disconnect()
        spy.loop_stop()
