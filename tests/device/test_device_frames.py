"""A backlog leaves the device in frames (protocol.frame): a real MicroPython bike that sampled
while its broker was down delivers every record exactly once, tagged, in far fewer messages."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from devkit import MOSQUITTO, Device, Gateway, Mosquitto, make_image

from fleetloop.procs import free_port
from protocol import frame

pytestmark = pytest.mark.e2e
RECORDS = 120


class Tap:
    """Counts the bike's telemetry messages and the records in them."""

    def __init__(self, keys: Path, port: int) -> None:
        self.messages = 0
        self.records = 0
        self.largest = 0  # most records in one message
        subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mirror-1")
        self.client.tls_set(ca_certs=str(keys / "ca.crt.pem"),
                            certfile=str(keys / "devices" / "mirror-1" / "cert.pem"),
                            keyfile=str(keys / "devices" / "mirror-1" / "key.pem"))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("fleet/bike-1/telemetry", 1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        n = len(frame.split(msg.payload)) if frame.is_frame(msg.payload) else 1
        self.messages += 1
        self.records += n
        self.largest = max(self.largest, n)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_backlog_is_delivered_in_frames(home: Path, tmp_path: Path,
                                          devices: list[Device]) -> None:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(home / "keys", tmp_path / "broker")
    broker.port = free_port()  # the image names it; the broker starts once the backlog is there
    image = make_image(home, tmp_path / "img", "bike-1", "bike", broker.port)
    dev = Device(image, "micropython", records=RECORDS, interval_ms=5)
    devices.append(dev)
    dev.wait_event("produced", timeout=30, seq=RECORDS)
    broker.start(same_port=True)
    gateway = tap = None
    try:
        tap = Tap(home / "keys", broker.port)
        gateway = Gateway(home / "keys", broker.port).start()
        dev.wait_event("drained", timeout=60, acked=RECORDS)
        assert gateway.seqs("bike-1") == list(range(1, RECORDS + 1))
        assert gateway.conflicts == [] and gateway.bad_tags == []
        assert tap.largest >= 3  # a bike's records leave several to a message
        assert tap.messages <= RECORDS // 2
    finally:
        if tap is not None:
            tap.close()
        if gateway is not None:
            gateway.stop()
        broker.stop()
