"""`fleetloop gateway ping` through a real gateway's broker, as the technician's own MQTT
identity. The device side of ping is being built at the same time (device code, another
branch): here a stand-in device answers, a paho client holding bike-1's real certificate that
echoes every ping payload on its pong topic, as docs/protocol.md says a device does.

Checked: round trips are timed; an unanswered ping exits 1 with a clear message; the
technician's certificate can write pings and read pongs (and the hint every client reads) but
neither write a device's other topics nor read its telemetry or acks; the gateway's own session is never knocked off; a stopped
gateway exits 3."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from gwkit import Device, FakeCloud, RunningGateway, gateway_settings, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from gateway.cli import app
from gateway.tech_identity import CN, TechIdentity

GatewayStarter = Callable[..., RunningGateway]


def _echo(dev: Device) -> None:
    """Make a connected stand-in device answer pings like the device agent does."""
    usual = dev.client.on_message  # acks and configs as before

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        usual(c, u, msg)
        if msg.topic == f"fleet/{dev.device_id}/ping":
            c.publish(f"fleet/{dev.device_id}/pong", msg.payload, qos=0)

    dev.client.on_message = on_message


def _ping(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["ping", "--home", str(home), *args])
    return result.exit_code, result.output


def _technician(home: Path, port: int, topics: list[str]) -> tuple[mqtt.Client, list[bytes]]:
    ident = TechIdentity.under(home, "gw-1")
    got: list[bytes] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=CN, protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(ident.ca_cert), certfile=str(ident.cert),
                   keyfile=str(ident.key), cert_reqs=ssl.CERT_REQUIRED)
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.on_subscribe = lambda c, u, mid, rc, p: ready.set()
    client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in topics]
    client.connect("localhost", port)
    client.loop_start()
    assert ready.wait(10), "technician could not subscribe"
    return client, got


def test_ping_times_a_round_trip_as_the_technician_and_nothing_more(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter,
        devices: Callable[..., Device]) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    connects = gw.status()["ingest"]["connects"]
    bike = devices(home, "bike-1", gw.port, subscribe=["fleet/bike-1/ping", "fleet/bike-1/ack",
                                                        "fleet/bike-1/config"])
    _echo(bike)

    code, out = _ping(home, "bike-1", "--count", "3", "--interval", "0.05", "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["device"] == "bike-1" and got["sent"] == 3 and got["answered"] == 3
    assert all(r["rtt_ms"] > 0 for r in got["replies"])
    pings = [p for t, p in bike.received if t == "fleet/bike-1/ping"]
    assert [p.decode() for p in pings] == [r["token"] for r in got["replies"]]
    assert all(1 <= len(p) <= 32 and p.isascii() for p in pings)
    code, out = _ping(home, "bike-1")
    assert code == 0 and "bike-1: 1 of 1 answered, round trip min" in out

    code, out = _ping(home, "bike-2", "--timeout", "0.3")
    assert code == 1
    assert "bike-2: 0 of 1 answered: no answer within 0.3 s" in out

    # The technician's certificate: pings and pongs only.
    tech, heard = _technician(home, gw.port, ["fleet/#", "fleet/bike-1/telemetry"])
    hint = wait_for(lambda: heard and heard[0], 5, "the retained hint")
    try:
        bike.send(1)
        wait_for(lambda: bike.acked == 1, 10, "record acked")
        bike.publish("fleet/bike-1/pong", b"seen", qos=0)
        wait_for(lambda: b"seen" in heard, 5, "the technician reads pongs")
        time.sleep(0.3)  # what the ACL denies never arrives: give it time to show up if it did
        # The pong and the hint every client may read (retained); no telemetry, no acks.
        assert sorted(heard) == sorted([b"seen", hint]), heard
        # Mosquitto answers a denied publish and then drops the connection.
        tech.publish("fleet/bike-1/config", b"not from the cloud", qos=1)
        time.sleep(0.5)
        assert not [p for t, p in bike.received if t == "fleet/bike-1/config"]
    finally:
        tech.disconnect()
        tech.loop_stop()
    assert gw.status()["ingest"]["connects"] == connects  # the gateway never knocked off

    gw.stop()
    code, out = _ping(home, "bike-1", "--timeout", "0.5")
    assert code == 3 and "cannot connect to the broker" in out and "Traceback" not in out


def test_ping_refuses_a_bad_device_id_and_a_missing_identity(tmp_path: Path) -> None:
    code, out = _ping(tmp_path, "bike/+", "--timeout", "0.5")
    assert code == 2 and "no technician identity" in out or "invalid device id" in out
    code, out = _ping(tmp_path, "bike-1", "--timeout", "0.5")
    assert code == 2 and "no technician identity" in out
