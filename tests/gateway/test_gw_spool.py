"""The spool's budget against the real cloud (cloud.main under uvicorn): over budget the oldest
batches are dropped whole, counted, and reported as a signed drop the cloud records and shows;
the chain stays verifiable across the hole; a gateway killed with a full spool while the cloud
is down loses nothing and keeps the order."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
from gwkit import (
    GATEWAY,
    Child,
    Device,
    RunningGateway,
    child_status,
    gateway_argv,
    gateway_settings,
    spool_records,
    wait_for,
)
from test_gw_real_cloud import RealCloud

from gateway.backoff import Backoff
from gateway.keys import GatewayKeys
from gateway.spool_budget import Budget, SpoolBudget
from gateway.store import KIND_DROP
from gateway.uplink import Outcome, Uplink
from protocol import batch as batch_codec


def _budget(home: Path, store, max_bytes: int, max_age_s: float = 86400.0) -> SpoolBudget:  # type: ignore[no-untyped-def]
    return SpoolBudget(store, GATEWAY, GatewayKeys.under(home, GATEWAY).load_batch_key(),
                       Budget(max_bytes, max_age_s))


def _uplink(home: Path, store, url: str) -> Uplink:  # type: ignore[no-untyped-def]
    return Uplink(store, GATEWAY, url, home / "gateways" / GATEWAY / "token",
                  Backoff(0.01, 0.02, random.Random(1)),
                  GatewayKeys.under(home, GATEWAY).load_batch_key())


def _scanned_bytes(store) -> int:  # type: ignore[no-untyped-def]
    with store.transaction() as db:
        return int(db.execute("SELECT coalesce(sum(length(body)), 0) FROM spool").fetchone()[0])


def _drain(uplink: Uplink) -> list[Outcome]:
    with httpx.Client() as http:
        outcomes = []
        while not outcomes or outcomes[-1] is Outcome.SENT:
            outcomes.append(uplink.send_one(http))
    return outcomes


def test_over_budget_the_oldest_batches_become_one_drop_the_cloud_records(home: Path) -> None:
    store = spool_records(home, "bike-2", 200)  # 20 batches of 10 records, the cloud not up
    used, _ = store.spool_usage()
    budget = _budget(home, store, used // 2)
    [dropped] = budget.enforce()
    assert dropped.first == 1 and dropped.batches >= 10 and dropped.records == 10 * dropped.batches
    # Twice over budget again later: the drop at the head is merged, never a second one.
    budget2 = _budget(home, store, store.spool_usage()[0] - 1)
    [again] = budget2.enforce()
    assert again.first == 1 and again.last == dropped.last + 1 and again.batches == 1
    kinds = [r.kind for r in store.spool_rows(0, 100)]
    assert kinds[0] == KIND_DROP and kinds.count(KIND_DROP) == 1
    st = store.stats()
    assert (st.dropped_batches, st.dropped_records) == (dropped.batches + 1,
                                                        dropped.records + 10)
    kept_from = again.last * 10 + 1
    assert store.spool_usage()[0] == _scanned_bytes(store)  # the kept count is exact

    cloud = RealCloud(home).start()
    try:
        cloud.register(home)
        outcomes = _drain(_uplink(home, store, cloud.url))
        assert outcomes[-1] is Outcome.EMPTY, outcomes
        assert store.spool_usage() == (0, None)
        # The batches after the drop chain to it: every kept record is stored, in order.
        assert cloud.seqs("bike-2") == list(range(kept_from, 201))
        with cloud.admin() as c:
            [gap] = c.get(f"/api/v1/gateways/{GATEWAY}/gaps").json()
            page = c.get(f"/gateways/{GATEWAY}").text
        assert gap["status"] == 0 and "spool budget" in gap["reason"]  # 0: never sent
        assert gap["records"] == kept_from - 1 and f"1..{again.last}" in gap["reason"]
        assert "dropped by the gateway" in page
    finally:
        cloud.stop()
        store.close()


def test_a_drop_over_batches_the_cloud_already_has_keeps_the_chain(home: Path) -> None:
    """The gateway lost the cloud's 2xx for batch 1 and then dropped it with the rest: the
    cloud takes the drop (same chain), and refuses one that does not chain."""
    store = spool_records(home, "bike-2", 50)
    cloud = RealCloud(home).start()
    try:
        cloud.register(home)
        uplink = _uplink(home, store, cloud.url)
        first = store.oldest_batch()
        assert first is not None
        with httpx.Client() as http:
            assert uplink.send_one(http) is Outcome.SENT
        store.add_to_spool(first)  # as if the gateway never heard the 2xx
        dropped = _budget(home, store, store.spool_usage()[0] // 2).enforce()[-1]
        assert dropped.first == 1
        assert _drain(uplink)[-1] is Outcome.EMPTY, uplink.status()
        # Batch 1 arrived before the drop; the rest of the drop is the hole.
        assert cloud.seqs("bike-2") == list(range(1, 11)) + list(range(dropped.last * 10 + 1, 51))
        # A drop that claims another past is refused (409), never recorded.
        key = GatewayKeys.under(home, GATEWAY).load_batch_key()
        bogus = batch_codec.Gap(gateway=GATEWAY, seq=99, prev="1" * 64, digest="2" * 64,
                                records=1, states=0, status=0, reason="x", created_ms=1,
                                kind=batch_codec.GAP_DROPPED, first=6)
        body, sig = batch_codec.seal_gap(bogus, key)
        token = (home / "gateways" / GATEWAY / "token").read_text()
        resp = httpx.post(cloud.url + batch_codec.GAP_PATH, content=body, headers={
            "Content-Type": batch_codec.GAP_CONTENT_TYPE, batch_codec.HEADER_GATEWAY: GATEWAY,
            batch_codec.HEADER_SIGNATURE: sig, "Authorization": f"Bearer {token}"})
        assert resp.status_code == 409, resp.text
    finally:
        cloud.stop()
        store.close()


def test_the_budget_on_a_running_gateway_while_the_cloud_is_down_then_back(
        home: Path, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    cloud = RealCloud(home)  # its port is chosen, nothing listens there yet
    gw = run_gateway(gateway_settings(home, cloud.url, batch_max_records=20,
                                      spool_max_bytes=6000, retry_max_s=0.5))
    bike = devices(home, "bike-1", gw.port)
    for seq in range(1, 301):
        bike.client.publish("fleet/bike-1/telemetry", bike.record(seq), qos=1)
    wait_for(lambda: bike.acked == 300, 20, "300 acked while the cloud is down")

    def dropped() -> int:
        return int(gw.status()["spool"]["dropped_batches"])

    wait_for(lambda: dropped() > 0 and gw.status()["inbox"] == 0, 20, "a drop")
    spool = gw.status()["spool"]
    assert spool["bytes"] <= 6000 + 2000 and spool["budget_bytes"] == 6000
    assert spool["records"] + spool["dropped_records"] == 300  # every acked record accounted
    cloud.start()
    try:
        cloud.register(home)
        wait_for(lambda: gw.status()["spool"]["batches"] == 0, 20, "the spool sent")
        spool = gw.status()["spool"]
        seqs = cloud.seqs("bike-1")
        assert seqs == list(range(301 - len(seqs), 301))  # the newest kept, in order
        assert len(seqs) + spool["dropped_records"] == 300
        with cloud.admin() as c:
            gaps = c.get(f"/api/v1/gateways/{GATEWAY}/gaps").json()
        assert sum(g["records"] for g in gaps) == spool["dropped_records"]
        assert all(g["status"] == 0 for g in gaps)
    finally:
        gw.stop()
        cloud.stop()


def test_killed_with_a_full_spool_and_the_cloud_down_nothing_is_lost_in_order(
        home: Path, children: Callable[..., Child], devices: Callable[..., Device],
        tmp_path: Path) -> None:
    cloud = RealCloud(home)
    settings = gateway_settings(home, cloud.url)
    argv = gateway_argv(settings) + ["--batch-size", "50"]
    child = children(argv, tmp_path / "gw.log")

    def up() -> bool:
        try:
            return bool((child_status(settings) or {})["ingest"]["link"] == "up")
        except KeyError:
            return False

    wait_for(up, 30, "gateway up")
    bike = devices(home, "bike-2", settings.mqtt_port)
    for seq in range(1, 501):
        bike.client.publish("fleet/bike-2/telemetry", bike.record(seq), qos=1)
    wait_for(lambda: bike.acked == 500, 30, "500 acked")
    wait_for(lambda: (child_status(settings) or {})["spool"]["records"] == 500, 10,
             "all sealed")
    broker = (child_status(settings) or {})["broker"]["pid"]
    child.popen.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    child.popen.wait(10)  # type: ignore[union-attr]
    os.kill(broker, signal.SIGKILL)  # a power cut takes the broker too
    bike.client.disconnect()
    cloud.start()
    try:
        cloud.register(home)
        children(argv, tmp_path / "gw2.log")
        wait_for(lambda: len(cloud.seqs("bike-2")) == 500, 40, "500 records in the cloud")
        assert cloud.seqs("bike-2") == list(range(1, 501))
        with cloud.admin() as c:
            assert c.get(f"/api/v1/gateways/{GATEWAY}/gaps").json() == []
            [gw] = [g for g in c.get("/api/v1/gateways").json() if g["id"] == GATEWAY]
        assert gw["gaps"] == 0
    finally:
        cloud.stop()

