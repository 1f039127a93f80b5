"""The device's side of `gateway ping`: a real MicroPython bike behind the gateway's own
Mosquitto (its generated config: mTLS, the per-device ACL) answers a valid ping token on its
pong topic, byte for byte, and nothing else."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fleetloop.procs import free_port
from fleetloop.stack import CLI, Stack, wait_records
from gateway import app as gateway_app
from gateway.settings import Settings
from protocol import topics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "device"))
from devkit import Device, make_image, wait_for  # noqa: E402

pytestmark = pytest.mark.e2e
DEVICE = "bike-ping"


class Technician:
    """Pings with the gateway's own certificate (the only writer of fleet/<id>/ping the ACL
    allows) and collects the pongs."""

    def __init__(self, home: Path, port: int) -> None:
        gw = home / "keys" / "gateways" / "gw-1"
        self.pongs: list[bytes] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-1",
                                  protocol=mqtt.MQTTv311)
        self.client.tls_set(ca_certs=str(home / "keys" / "ca.crt.pem"),
                            certfile=str(gw / "mqtt.crt.pem"), keyfile=str(gw / "mqtt.key.pem"),
                            cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            topics.topic(DEVICE, topics.PONG), qos=0)
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("localhost", port)
        self.client.loop_start()
        assert subscribed.wait(10), "could not subscribe to the pong topic"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.pongs.append(bytes(msg.payload))

    def received(self) -> list[bytes]:
        with self._lock:
            return list(self.pongs)

    def ping(self, token: bytes) -> None:
        self.client.publish(topics.topic(DEVICE, topics.PING), token, qos=0).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The gateway's Mosquitto (gateway.app builds it from the same settings `gateway run`
    uses), without the rest of the gateway."""
    from fwtool.keys import generate

    home = tmp_path / "home"
    generate(home, ["gw-1"], [DEVICE])
    settings = Settings.build(env={}, home=home, gateway_id="gw-1", mqtt_port=free_port(),
                              status_port=free_port())
    broker = gateway_app.build(settings).broker
    broker.start()
    try:
        yield home, settings.mqtt_port
    finally:
        broker.stop()


def test_the_device_echoes_a_valid_ping_token_and_ignores_anything_else(
        broker_port: tuple[Path, int], tmp_path: Path) -> None:
    home, port = broker_port
    image = make_image(home, tmp_path / "img", DEVICE, "bike", port)
    dev = Device(image, "micropython", records=1, interval_ms=1000)
    tech = Technician(home, port)
    try:
        dev.wait_event("connected")
        first = b"t-1"

        def answered() -> bool:  # the device's subscription may trail its CONNACK a little
            if first in tech.received():
                return True
            tech.ping(first)
            return False

        wait_for(answered, 15, "a pong to the first ping")
        longest = bytes(range(0x20, 0x20 + topics.MAX_PING_BYTES))  # every printable kind
        bad = [b"", b"x" * (topics.MAX_PING_BYTES + 1), b"tab\there", b"caf\xc3\xa9", b"\x00"]
        for token in [longest, *bad, b"last"]:
            tech.ping(token)
        wait_for(lambda: b"last" in tech.received(), 10, "a pong to the last ping")
        pongs = [p for p in tech.received() if p != first]
        assert pongs == [longest, b"last"]  # the bad tokens got no answer, nothing else came
        assert dev.proc.poll() is None  # and the device kept running
        assert "Traceback" not in dev.stderr()
    finally:
        tech.close()
        dev.stop()


def test_gateway_ping_reaches_a_real_device_through_a_running_gateway(stack: Stack) -> None:
    """What a technician types: `fleetloop gateway ping` as its own identity, while the gateway
    runs and holds its own session; a real MicroPython bike answers, an unknown device does
    not (exit 1)."""
    stack.start_path(["bike-1"])
    stack.start_device("bike-1", "bike", interval_ms=500)
    wait_records(stack, "bike-1", 1)

    def ping(device: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "gateway", "ping", device, "--home", str(stack.home),
                               "--count", "3", "--interval", "0.1", "--timeout", "5", "--json"],
                              env=stack.env(), capture_output=True, text=True, timeout=60)

    out = ping("bike-1")
    assert out.returncode == 0, out.stdout + out.stderr
    body = json.loads(out.stdout)
    assert (body["sent"], body["answered"]) == (3, 3)
    assert all(r["rtt_ms"] is not None and r["rtt_ms"] > 0 for r in body["replies"])
    silent = ping("bike-404")
    assert silent.returncode == 1 and json.loads(silent.stdout)["answered"] == 0
    status = stack.gateway_status() or {}
    assert status["ingest"]["link"] == "up", "the gateway's own session was never knocked off"
    before = len(wait_records(stack, "bike-1", 1))
    assert len(wait_records(stack, "bike-1", before + 1)) > before, "the bike still delivers"
