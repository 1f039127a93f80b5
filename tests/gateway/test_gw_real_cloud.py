"""The gateway against the real cloud app (cloud.main, served by uvicorn in a thread): the
batches it signs are accepted, a batch sent again after a lost 2xx does not wedge the chain,
and configs set through the cloud API reach the device."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gwkit import (
    GATEWAY,
    Device,
    RunningGateway,
    free_port,
    gateway_settings,
    record_key,
    spool_records,
    wait_for,
)

from gateway.backoff import Backoff
from gateway.keys import GatewayKeys
from gateway.uplink import Outcome, Uplink
from protocol import config as config_codec

cloud_main = pytest.importorskip("cloud.main")
cloud_settings = pytest.importorskip("cloud.settings")
uvicorn = pytest.importorskip("uvicorn")

ADMIN = "gateway-tests-admin-token"


class RealCloud:
    def __init__(self, home: Path) -> None:
        settings = cloud_settings.Settings.load(home=home, admin_token=ADMIN, dev=False, env={})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(cloud_main.create_app(settings),
                                                    host="127.0.0.1", port=self.port,
                                                    log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> RealCloud:
        self.thread.start()
        wait_for(lambda: self.server.started, 20, "cloud up")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"})

    def register(self, home: Path) -> None:
        pub = (home / "keys" / "gateways" / GATEWAY / "batch.pub").read_bytes()
        with self.admin() as c:
            resp = c.post("/api/v1/gateways",
                          json={"id": GATEWAY, "public_key": base64.b64encode(pub).decode()})
            assert resp.status_code == 201, resp.text
            (home / "gateways" / GATEWAY / "token").write_text(resp.json()["token"])
            for dev in ("bike-1", "bike-2"):  # enrolled with their record keys, as the factory does
                key = base64.b64encode(record_key(home, dev)).decode()
                assert c.post("/api/v1/devices", json={"id": dev, "product": "bike",
                                                       "record_key": key}).status_code in (200, 201)

    def seqs(self, device: str) -> list[int]:
        with self.admin() as c:
            resp = c.get(f"/api/v1/devices/{device}/telemetry",
                         params={"after_seq": 0, "limit": 10000})
            return [] if resp.status_code == 404 else [r["seq"] for r in resp.json()["records"]]


@pytest.fixture
def real_cloud(home: Path) -> Iterator[RealCloud]:
    c = RealCloud(home).start()
    c.register(home)
    yield c
    c.stop()


def test_records_and_configs_through_the_real_cloud(
        home: Path, real_cloud: RealCloud, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    gw = run_gateway(gateway_settings(home, real_cloud.url))
    bike = devices(home, "bike-1", gw.port)
    for seq in range(1, 201):
        bike.client.publish("fleet/bike-1/telemetry", bike.record(seq), qos=1)
    wait_for(lambda: bike.acked == 200, 20, "ack 200")
    wait_for(lambda: len(real_cloud.seqs("bike-1")) == 200, 20, "200 records in the cloud")
    assert real_cloud.seqs("bike-1") == list(range(1, 201))
    assert gw.status()["uplink"]["last_error"] is None
    with real_cloud.admin() as c:
        assert c.put("/api/v1/devices/bike-1/config",
                     json={"settings": {"interval_ms": 777}}).status_code == 200
    wait_for(lambda: bike.configs, 20, "config at the device")
    body = config_codec.open_envelope(bike.configs[-1], (home / "keys" / "config.pub").read_bytes())
    assert body["settings"] == {"interval_ms": 777} and body["device"] == "bike-1"


def test_a_batch_sent_again_after_a_lost_2xx_is_accepted(home: Path,
                                                        real_cloud: RealCloud) -> None:
    store = spool_records(home, "bike-2", 20)
    uplink = Uplink(store, GATEWAY, real_cloud.url, home / "gateways" / GATEWAY / "token",
                    Backoff(0.01, 0.02, random.Random(1)),
                    GatewayKeys.under(home, GATEWAY).load_batch_key())
    first = store.oldest_batch()
    assert first is not None
    with httpx.Client() as http:
        assert uplink.send_one(http) is Outcome.SENT
        store.add_to_spool(first)  # as if the gateway died before deleting it
        outcomes = [uplink.send_one(http) for _ in range(3)]
        time.sleep(0.1)
    assert outcomes == [Outcome.SENT, Outcome.SENT, Outcome.EMPTY], uplink.status()["last_error"]
    assert real_cloud.seqs("bike-2") == list(range(1, 21))
    store.close()


def test_register_keeps_a_token_only_its_owner_reads_and_refusals_are_clear(home: Path) -> None:
    import stat

    from gateway import enroll
    from gateway.errors import EnrollError

    cloud = RealCloud(home).start()
    try:
        settings = gateway_settings(home, cloud.url)
        path = enroll.register(settings, ADMIN)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text()
        # The token works: the cloud answers the gateway's config feed with it.
        resp = httpx.get(cloud.url + "/api/v1/gateway/configs", params={"after": 0},
                         headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200
        with pytest.raises(EnrollError, match="401|403"):
            enroll.register(settings, "not-the-admin-token-at-all")
        assert path.read_text() == token  # a refused registration keeps the token it had
    finally:
        cloud.stop()
    with pytest.raises(EnrollError, match="cannot reach the cloud"):
        enroll.register(settings, ADMIN, timeout_s=2)


def test_a_batch_the_cloud_refuses_becomes_a_dead_letter_and_a_recorded_gap(
        home: Path, real_cloud: RealCloud) -> None:
    """A batch the real cloud refuses for itself (here its body was damaged on disk) must not
    hold every later batch: it is kept aside, the cloud records a signed gap in the chain, and
    the batches behind it are stored."""
    store = spool_records(home, "bike-2", 30)
    with store.transaction() as db:
        db.execute("UPDATE spool SET body = ? WHERE seq = 2", (b"not zlib at all",))
    uplink = Uplink(store, GATEWAY, real_cloud.url, home / "gateways" / GATEWAY / "token",
                    Backoff(0.01, 0.02, random.Random(1)),
                    GatewayKeys.under(home, GATEWAY).load_batch_key())
    with httpx.Client() as http:
        outcomes = [uplink.send_one(http) for _ in range(5)]
    assert outcomes == [Outcome.SENT] * 4 + [Outcome.EMPTY], uplink.status()
    assert real_cloud.seqs("bike-2") == list(range(1, 11)) + list(range(21, 31))
    [dead] = store.dead_letters()
    assert (dead.seq, dead.status, dead.records) == (2, 400, 10) and "zlib" in dead.reason
    with real_cloud.admin() as c:
        gateways = c.get("/api/v1/gateways").json()
    assert "zlib" in json.dumps(gateways), gateways  # the gap and its reason are visible
