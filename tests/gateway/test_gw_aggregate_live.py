"""Aggregation per product on the whole path: devices over mTLS into the gateway's Mosquitto,
the gateway as its own process, the real cloud app behind uvicorn, where cloud ops set each
product's mode and the gateway fetches it. A windowed product keeps its raw records next to
its windows, a local one only sends windows, a raw one only raw records; a kill -9 of the
gateway in the middle of a window neither loses nor double counts that window."""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gwkit import (
    Child,
    Device,
    child_status,
    gateway_argv,
    gateway_settings,
    signed_record,
    wait_for,
)
from test_gw_real_cloud import RealCloud, record_key

from gateway.settings import Settings
from protocol import state as state_codec

T0 = 1_732_345_620_000  # on a 30 s boundary
MODES = {"bike": "30", "mirror": "2:local", "engine": "raw"}


@pytest.fixture
def real_cloud(home: Path) -> Iterator[RealCloud]:
    c = RealCloud(home).start()
    c.register(home)
    with c.admin() as admin:  # enrolled as the factory does
        for dev, product in (("mirror-1", "mirror"), ("engine-1", "engine")):
            key = base64.b64encode(record_key(home, dev)).decode()
            assert admin.post("/api/v1/devices", json={"id": dev, "product": product,
                                                       "record_key": key}).status_code == 201
        for product, mode in MODES.items():  # cloud ops choose; the gateways follow
            assert admin.put(f"/api/v1/aggregation/{product}",
                             json={"mode": mode}).status_code == 200
    yield c
    c.stop()


def _start(children: Callable[..., Child], argv: list[str], log: Path, s: Settings) -> Child:
    env = {**os.environ, "FLEETLOOP_AGGREGATE_GRACE_S": "0.3", "FLEETLOOP_AGGREGATE_POLL_S": "0.2"}
    env.pop("FLEETLOOP_AGGREGATE", None)
    child = children(argv, log, env)
    wait_for(lambda: (st := child_status(s)) and st["broker"]["up"] and st["ingest"]["link"] == "up"
             and st["aggregation"]["policy"] == MODES, 30, "gateway up, with the cloud's policy")
    return child


def _hello(dev: Device, home: Path, profile: str) -> None:
    """The state a device sends on connect: it names the product (and consent) at the gateway."""
    dev.publish(f"fleet/{dev.device_id}/state", state_codec.encode(
        {"v": 2, "d": dev.device_id, "i": dev.incarnation, "t": T0, "profile": profile,
         "consent": "personal", "why": "connect"}, dev.mac))


def _send(dev: Device, home: Path, seq: int, t: int, metrics: dict[str, Any]) -> None:
    dev.publish(f"fleet/{dev.device_id}/telemetry",
                signed_record(home, dev.device_id, seq, t, metrics))


def _get(cloud: RealCloud, path: str) -> Any:
    with cloud.admin() as c:
        r = c.get(path)
        assert r.status_code == 200, r.text
        return r.json()


def test_windows_raw_and_local_products_through_a_kill_9(
        home: Path, real_cloud: RealCloud, tmp_path: Path, children: Callable[..., Child],
        devices: Callable[..., Device]) -> None:
    s = gateway_settings(home, real_cloud.url)
    argv = gateway_argv(s)
    first = _start(children, argv, tmp_path / "gateway-1.log", s)
    broker = child_status(s)["broker"]["pid"]  # type: ignore[index]
    bike_values = [{"power": 150 + 13 * i % 70, "heart_rate": 120 + i} for i in range(10)]

    bike = devices(home, "bike-1", s.mqtt_port)
    _hello(bike, home, "bike")
    for i in range(5):  # the first half of the bike's window [T0, T0 + 30 s)
        _send(bike, home, i + 1, T0 + i * 1000, bike_values[i])
    wait_for(lambda: bike.acked == 5, 20, "ack 5")
    wait_for(lambda: real_cloud.seqs("bike-1") == [1, 2, 3, 4, 5], 20, "raw records up")
    # The batch that carried them also stored the open window: kill the gateway now.
    os.killpg(first.pid, signal.SIGKILL)
    assert first.popen is not None and first.popen.wait(5) == -signal.SIGKILL
    wait_for(lambda: not os.path.exists(f"/proc/{broker}"), 10, "broker gone with its gateway")

    # The old client would reconnect as bike-1 to the new broker and take the session over
    # from the new one (the broker keeps one connection per client id): stop it first.
    bike.client.disconnect()
    bike.client.loop_stop()
    _start(children, argv, tmp_path / "gateway-2.log", s)
    bike = devices(home, "bike-1", s.mqtt_port)
    mirror = devices(home, "mirror-1", s.mqtt_port)
    engine = devices(home, "engine-1", s.mqtt_port)
    for dev, product in ((bike, "bike"), (mirror, "mirror"), (engine, "engine")):
        _hello(dev, home, product)
    for i in range(5, 10):  # the second half of the bike's window, after the restart
        _send(bike, home, i + 1, T0 + i * 1000, bike_values[i])
    _send(bike, home, 11, T0 + 31_000, {"power": 1, "heart_rate": 1})  # its clock moves on
    for seq in range(1, 6):
        _send(mirror, home, seq, T0 + seq * 100, {"reps": seq})
        _send(engine, home, seq, T0 + seq * 100, {"t24": 640.5 + seq})
    wait_for(lambda: _get(real_cloud, "/api/v1/devices/bike-1/aggregates")["aggregates"],
             30, "the bike's window in the cloud")
    wait_for(lambda: _get(real_cloud, "/api/v1/devices/mirror-1/aggregates")["aggregates"],
             30, "the mirror's window in the cloud")
    wait_for(lambda: real_cloud.seqs("engine-1") == [1, 2, 3, 4, 5], 30, "engine records up")

    (window,) = _get(real_cloud, "/api/v1/devices/bike-1/aggregates")["aggregates"]
    assert (window["start"], window["n"], window["first_seq"], window["last_seq"]) == (
        T0, 10, 1, 10)
    power = [v["power"] for v in bike_values]
    assert window["m"]["power"]["n"] == 10 and window["m"]["heart_rate"]["n"] == 10
    assert (window["m"]["power"]["min"], window["m"]["power"]["max"]) == (min(power), max(power))
    assert window["m"]["power"]["mean"] == pytest.approx(sum(power) / 10)
    assert window["m"]["power"]["last"] == power[-1] and window["raw"] == "sent"
    wait_for(lambda: real_cloud.seqs("bike-1") == list(range(1, 12)), 20, "bike raw 1..11")

    mirror_page = _get(real_cloud, "/api/v1/devices/mirror-1/aggregates")
    assert mirror_page["raw_kept_at_gateway"] == {"records": 5, "windows": 1,
                                                  "gateways": ["gw-1"]}
    assert mirror_page["aggregates"][0]["m"]["reps"]["mean"] == 3.0
    assert real_cloud.seqs("mirror-1") == []  # the raw records stayed at the gateway
    assert _get(real_cloud, "/api/v1/devices/engine-1/aggregates")["aggregates"] == []
    status = child_status(s)["aggregation"]  # type: ignore[index]
    assert status["policy"] == MODES and status["source"] == "cloud"
    assert status["local_records"] == 5
