"""Garbage on device topics goes to a bounded quarantine with its reason, while other devices'
records keep being stored; one device cannot flush the others' rows or fill the disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from gwkit import Device, FakeCloud, RunningGateway, gateway_settings, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.quarantine import HEAD_BYTES, Quarantine, device_of
from gateway.store import Store


def _garbage() -> list[bytes]:
    rec = {"v": 2, "d": "bike-2", "i": 1, "s": 1, "t": 1, "m": {"p": 1}, "h": "0" * 32}
    wrong_types = [json.dumps({**rec, "s": "one"}), json.dumps({**rec, "m": [1, 2]}),
                   json.dumps({**rec, "t": -5}), json.dumps({**rec, "d": "bike-1"}),
                   json.dumps([rec]), "null", "1e999"]
    return ([os.urandom(n) for n in (1, 7, 100, 2000)]
            + [w.encode() for w in wrong_types]
            + [b"[" * 20000 + b"]" * 20000, b'{"a":' * 10000 + b"1" + b"}" * 10000,
               b"x" * 60_000])  # deep nesting; larger than any record (under the broker's cap)


def test_garbage_from_one_device_is_quarantined_while_another_is_stored(
        home: Path, cloud: FakeCloud, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url, quarantine_device_rows=30))
    bike = devices(home, "bike-1", gw.port)
    attacker = devices(home, "bike-2", gw.port)
    garbage = _garbage()
    sent = 0
    for seq in range(1, 401):
        bike.client.publish("fleet/bike-1/telemetry", bike.record(seq), qos=1)
        for topic in ("telemetry", "state"):
            attacker.client.publish(f"fleet/bike-2/{topic}", garbage[seq % len(garbage)], qos=1)
            sent += 1
    # A 1 MB payload is over the broker's packet limit: Mosquitto drops that connection and
    # the gateway never sees it (nothing to quarantine); the attacker's client reconnects.
    attacker.client.publish("fleet/bike-2/telemetry", b"\x00" * (1024 * 1024), qos=1)
    wait_for(lambda: bike.acked == 400, 30, "the honest device acked")
    wait_for(lambda: cloud.seqs("bike-1") == list(range(1, 401)), 20, "its records stored")
    # Refusals are counted at once; rows reach the table at the next flush (every 0.5 s), and
    # on a quick run the honest device's records are all stored before that.
    wait_for(lambda: gw.status()["quarantine"]["total"] >= sent, 20, "every refusal counted")
    wait_for(lambda: gw.status()["quarantine"]["kept"] > 0, 10, "refused messages kept")
    q = gw.status()["quarantine"]
    assert 0 < q["kept"] <= 30  # bounded per device
    assert len(q["latest"]) <= 20 and {r["device"] for r in q["latest"]} == {"bike-2"}
    reasons = " ".join(r["reason"] for r in q["latest"])
    assert "bad record" in reasons or "bad state" in reasons
    # each row keeps its payload's real size; the 1 MB one never reached the gateway
    assert {r["size"] for r in q["latest"]} <= {len(g) for g in garbage}
    assert cloud.seqs("bike-2") == []
    store = Store(gw.settings.db_path)
    try:
        rows = store.quarantine(100)
        assert rows and all(len(r.head) <= HEAD_BYTES for r in rows)
    finally:
        store.close()


def test_one_device_cannot_flush_others_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    store.open()
    clock = [0.0]
    q = Quarantine(store, max_rows=100, per_device=10, rate=2.0, burst=5.0,
                   clock=lambda: clock[0])
    for i in range(3):
        q.add("fleet/mirror-1/telemetry", f"bad record {i}", b"{")
    q.flush()
    for step in range(2000):  # one noisy device for 200 s
        clock[0] = step / 10
        q.add("fleet/bike-2/telemetry", "bad record", os.urandom(50))
        if step % 50 == 0:
            q.flush()
    q.flush()
    assert len(store.quarantine(10, device="mirror-1")) == 3
    assert len(store.quarantine(1000, device="bike-2")) == 10
    assert store.stats().quarantine_total == 2003  # every refusal counted, kept or not
    store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(max_size=300), st.text(max_size=500), st.binary(max_size=3000)),
                max_size=40))
def test_whatever_arrives_the_table_stays_bounded(tmp_path: Path,
                                                   items: list[tuple[str, str, bytes]]) -> None:
    store = Store(tmp_path / f"q-{os.getpid()}.db")
    store.open()
    try:
        with store.transaction() as db:
            db.execute("DELETE FROM quarantine")
        q = Quarantine(store, max_rows=15, per_device=5)
        for topic, reason, payload in items:
            q.add(topic, reason, payload)
        q.flush()
        rows = store.quarantine(1000)
        assert len(rows) <= 15
        for r in rows:
            assert len(r.head) <= HEAD_BYTES and r.device == device_of(r.topic)
            assert len(r.topic) <= 200 and len(r.reason) <= 200
    finally:
        store.close()
