"""Ingest end to end: stand-in devices (paho + device certificates) -> the gateway's Mosquitto ->
ingest -> batches -> fake cloud. Everything real but the cloud."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from gwkit import ROOT, Device, FakeCloud, RunningGateway, gateway_settings, wait_for

from protocol import record as record_codec
from protocol import state as state_codec

GatewayStarter = Callable[..., RunningGateway]
DeviceMaker = Callable[..., Device]


def test_records_reach_the_cloud_once_and_are_acked(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bikes = [devices(home, d, gw.port) for d in ("bike-1", "bike-2")]
    for seq in range(1, 301):
        for bike in bikes:
            bike.send(seq)
    for bike in bikes:
        wait_for(lambda b=bike: b.acked == 300, 20, f"{bike.device_id} acked 300")
    wait_for(lambda: len(cloud.records) == 600, 20, "600 records in the cloud")
    assert cloud.seqs("bike-1") == list(range(1, 301)) == cloud.seqs("bike-2")
    assert cloud.duplicate_records == 0 and not cloud.refusals
    st = wait_for(lambda: (s := gw.status())["spool"]["batches"] == 0 and s, 10, "spool empty")
    assert st["ingest"]["records"] == 600 and st["ingest"]["duplicates"] == 0
    assert st["inbox"] == 0 and st["uplink"]["sent_records"] == 600
    assert st["devices"]["known"] == 2


def test_duplicates_are_acked_again_and_gaps_hold_the_ack(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    for seq in (1, 2, 4, 5):
        bike.send(seq)
    wait_for(lambda: gw.status()["ingest"]["records"] == 4, 10, "4 records stored")
    wait_for(lambda: bike.acked == 2, 10, "ack 2")
    time.sleep(0.2)
    assert bike.acked == 2  # 4 and 5 are stored but the gap at 3 holds the ack
    bike.send(3)
    wait_for(lambda: bike.acked == 5, 10, "ack 5 once the gap closed")
    time.sleep(0.3)
    n = len(bike.acks)
    for seq in (1, 3, 5):
        bike.send(seq)  # a device that missed its acks sends again: acked again
    wait_for(lambda: gw.status()["ingest"]["duplicates"] == 3, 10, "3 duplicates")
    wait_for(lambda: len(bike.acks) > n, 10, "acks for the duplicates")
    assert bike.acks[n:] == [5] * len(bike.acks[n:])
    wait_for(lambda: len(cloud.records) == 5, 10, "5 records in the cloud")
    assert cloud.seqs("bike-1") == [1, 2, 3, 4, 5]
    assert gw.status()["ingest"]["duplicates"] == 3


def test_bad_payloads_are_refused_and_counted_while_good_ones_flow(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    invalid = json.loads((ROOT / "tests" / "vectors" / "records.json").read_text())["invalid"]
    bad = [v["wire"].encode() for v in invalid]
    bad += [b"", b"\xff\xfe not utf-8", b"x" * 5000,
            bike.record(7).replace(b'"bike-1"', b'"bike-2"')]  # another device's id
    seq = 0
    for payload in bad:
        bike.publish("fleet/bike-1/telemetry", payload)
        seq += 1
        bike.send(seq)
    bike.publish("fleet/bike-1/state", b'{"v":1,"d":"bike-1","bogus":1}')
    bike.publish("fleet/bike-1/state", state_codec.encode({"v": 1, "d": "bike-2", "t": 1}))
    # A lone surrogate is valid JSON but no UTF-8: once stored, it stopped the batcher for good.
    bike.publish("fleet/bike-1/state", b'{"v":1,"d":"bike-1","fw":"\\ud800"}')
    bike.publish("fleet/bike-1/status", b"maybe")
    seq += 1
    bike.send(seq)
    wait_for(lambda: bike.acked == seq, 10, f"ack {seq}")
    wait_for(lambda: len(cloud.records) == seq, 10, "good records in the cloud")
    st = gw.status()["ingest"]
    assert gw.status()["worker_restarts"]["batcher"] == 0
    assert st["rejected"] == len(bad) + 4
    assert st["records"] == seq and st["states"] == 0
    reasons = st["reject_reasons"]
    assert any("record device does not match" in r for r in reasons)
    assert any(r.startswith("bad state") for r in reasons)
    assert any("status must be" in r for r in reasons)


def test_states_and_online_status(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    bike.publish("fleet/bike-1/status", b"online", retain=True)
    state = {"v": 1, "d": "bike-1", "t": 5, "impl": "cpython", "config_version": 0,
             "config_status": "none", "seq": 0}
    bike.publish("fleet/bike-1/state", state_codec.encode(state))
    wait_for(lambda: gw.status()["devices"]["online"] == ["bike-1"], 10, "bike-1 online")
    wait_for(lambda: cloud.states, 10, "state in the cloud")
    assert cloud.states == [state]
    bike.publish("fleet/bike-1/status", b"offline", retain=True)
    wait_for(lambda: gw.status()["devices"]["online"] == [], 10, "bike-1 offline")
    assert gw.status()["devices"]["known"] == 1


def test_a_killed_broker_loses_nothing(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    """kill -9 of Mosquitto mid-stream: the gateway restarts it and reconnects; the device
    sends again whatever its acks did not cover (as the real agent does)."""
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    for seq in range(1, 201):
        bike.client.publish("fleet/bike-1/telemetry", bike.record(seq), qos=1)
    broker_pid = gw.status()["broker"]["pid"]
    os.kill(broker_pid, signal.SIGKILL)
    wait_for(lambda: (s := gw.status())["broker"]["up"] and s["broker"]["pid"] != broker_pid
             and s["ingest"]["link"] == "up", 20, "broker restarted, ingest reconnected")
    bike.client.disconnect()
    bike.client.loop_stop()
    again = devices(home, "bike-1", gw.port)
    resend_from = max(bike.acked, 0) + 1
    for seq in range(resend_from, 401):
        again.client.publish("fleet/bike-1/telemetry", again.record(seq), qos=1)
    wait_for(lambda: again.acked == 400, 30, "ack 400")
    wait_for(lambda: len(cloud.records) == 400, 20, "400 records in the cloud")
    assert cloud.seqs("bike-1") == list(range(1, 401))
    st = gw.status()
    assert st["broker"]["restarts"] == 1 and st["ingest"]["connects"] >= 2


def test_ingest_throughput(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    """Four devices publish QoS 1 as fast as they can; time until every record is acked."""
    gw = run_gateway(gateway_settings(home, cloud.url, batch_interval_s=0.5))
    per_device = 5000
    fleet = [devices(home, d, gw.port) for d in ("bike-1", "bike-2", "mirror-1", "engine-1")]
    payloads = {d.device_id: [d.record(s) for s in range(1, per_device + 1)] for d in fleet}
    t0 = time.perf_counter()
    for i in range(per_device):
        for d in fleet:
            d.client.publish(f"fleet/{d.device_id}/telemetry", payloads[d.device_id][i], qos=1)
    for d in fleet:
        wait_for(lambda d=d: d.acked == per_device, 120, f"{d.device_id} acked")
    elapsed = time.perf_counter() - t0
    total = per_device * len(fleet)
    wait_for(lambda: len(cloud.records) == total, 60, "all records in the cloud")
    rate = total / elapsed
    print(f"\ningest: {total} records from {len(fleet)} devices acked in {elapsed:.2f}s "
          f"= {rate:.0f} records/s (publishers in the same process)")
    assert rate > 1000
    assert gw.status()["ingest"]["duplicates"] == 0


def test_a_valid_record_near_the_size_limit_is_stored_and_delivered(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    """A record the protocol accepts is never refused by a stricter check of the gateway's own
    (it once re-checked records as spaced JSON, refusing valid ~2 KB records: never acked, the
    device resent them forever and its ack stalled)."""
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    metrics = {f"m{i:02d}" + "x" * 29: -2.2250738585072014e-308 for i in range(31)}
    compact = bike.record(1, **metrics)
    assert len(compact) > 1900 and len(json.dumps(json.loads(compact))) > 1975
    spaced = b"{" + b" " * (2048 - len(compact)) + compact[1:]  # valid JSON, exactly the limit
    assert len(spaced) == 2048 and record_codec.decode(spaced)["s"] == 1
    bike.publish("fleet/bike-1/telemetry", spaced)
    too_big = bike.record(2, **metrics)
    bike.publish("fleet/bike-1/telemetry", b" " * (2049 - len(too_big)) + too_big)
    for seq in (2, 3):
        bike.send(seq)
    wait_for(lambda: bike.acked == 3, 10, "all three acked")
    wait_for(lambda: len(cloud.records) == 3, 10, "all three delivered")
    st = gw.status()
    assert st["ingest"]["rejected"] == 1 and st["worker_restarts"]["batcher"] == 0
    assert any("too large" in r for r in st["ingest"]["reject_reasons"])
    assert cloud.records[("bike-1", 1)]["m"] == metrics


def test_a_crashed_committer_gets_its_unacked_messages_again(
        home: Path, devices: DeviceMaker) -> None:
    """A bug that crashes the committer mid-group must not strand the group's messages in the
    broker's in-flight window: the supervisor restarts it and the session is renewed."""
    from gwkit import GATEWAY, free_port

    from gateway.broker import Broker
    from gateway.broker_config import BrokerConfig, current_user, find_mosquitto
    from gateway.ingest import Ingest, MqttParams
    from gateway.keys import GatewayKeys
    from gateway.store import Store
    from gateway.worker import Worker

    class OnceBrokenStore(Store):
        crashes = 0

        def commit_ingest(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not self.crashes:
                self.crashes += 1
                raise RuntimeError("a bug")
            return super().commit_ingest(*args, **kwargs)

    keys = GatewayKeys.under(home, GATEWAY)
    port = free_port()
    broker = Broker(BrokerConfig(home / "broker", "127.0.0.1", port, keys, GATEWAY,
                                 current_user()), find_mosquitto())
    store = OnceBrokenStore(home / "gw.db")
    store.open()
    ingest = Ingest(store, MqttParams("127.0.0.1", port, GATEWAY, keys.ca_cert, keys.mqtt_cert,
                                      keys.mqtt_key))
    worker = Worker("ingest", ingest.run, on_crash=ingest.resync)
    broker.start()
    try:
        ingest.start()
        worker.start()
        wait_for(lambda: ingest.status()["link"] == "up", 10, "ingest connected")
        bike = devices(home, "bike-1", port)
        for seq in range(1, 6):
            bike.client.publish("fleet/bike-1/telemetry", bike.record(seq), qos=1)
        wait_for(lambda: bike.acked == 5, 20, "ack 5 after the crash")
        assert store.crashes == 1 and worker.restarts == 1
        # each once; in either order: the messages the crashed group held come again after the
        # reconnect, and those already read off the old connection may be committed first
        # (the cloud stores a device's records by seq whatever order they came in)
        assert sorted(store.inbox_seqs("bike-1")) == [1, 2, 3, 4, 5]
    finally:
        worker.stop()
        ingest.stop()
        broker.stop()
        store.close()
