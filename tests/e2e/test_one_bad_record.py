"""One device with a genuine certificate, publishing on its own topics only, must not stop its
gateway: not by out-of-range integers, not by a floor far ahead, not by anything it can send.
Real Mosquitto, gateway and cloud; the devices are MQTT clients holding device certificates
(what an attacker with one device's keys has)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetloop.stack import Stack, seqs_of, wait_records
from protocol import record, state, tag

pytestmark = pytest.mark.e2e
BIG = 2**63  # does not fit a 64-bit SQLite INTEGER
INCARNATION = 77


class DeviceClient:
    """One persistent MQTT connection with a device's certificate."""

    def __init__(self, stack: Stack, device_id: str) -> None:
        keys = stack.home / "keys"
        self.device_id = device_id
        self.client = stack.mqtt_client(device_id)
        self.client.connect("localhost", stack.mqtt_port)
        self.client.loop_start()
        self.mac = tag.Hmac((keys / "devices" / device_id / "record.key").read_bytes())

    def publish(self, kind: str, payload: bytes) -> None:
        info = self.client.publish(f"fleet/{self.device_id}/{kind}", payload, qos=1)
        info.wait_for_publish(10)

    def send(self, seq: int) -> None:
        self.publish("telemetry", record.encode(self.device_id, INCARNATION, seq,
                                                1732345678000 + seq, {"power": seq}, self.mac))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def devices(stack: Stack, *ids: str) -> Iterator[list[DeviceClient]]:
    """Enrolled devices (their record keys registered, as the factory does), connected."""
    for i in ids:
        stack.register_device(i, "bike")
    clients = [DeviceClient(stack, i) for i in ids]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


def raw_record(seq: Any, t: Any, device: str = "bike-1") -> bytes:
    return json.dumps({"v": 1, "d": device, "s": seq, "t": t, "m": {"x": 1}},
                      separators=(",", ":")).encode()


def test_one_device_cannot_stop_its_gateway(stack: Stack) -> None:
    """The faults found from outside, each of which once stopped every device behind the
    gateway: a t beyond 2**63 (the cloud refused the batch on every retry), a seq beyond 2**63
    (ingest crash-looped on SQLite's OverflowError), a floor of 300,000,000 (ingest froze while
    it walked every seq and counted them all as dropped)."""
    stack.start_path(["bike-1", "bike-2", "bike-3"])
    with devices(stack, "bike-1", "bike-2", "bike-3") as (attacker, bike2, bike3):
        for seq in range(1, 6):
            bike2.send(seq)
        attacker.publish("telemetry", raw_record(400_000_000, BIG))
        attacker.publish("telemetry", raw_record(BIG, 1))
        attacker.publish("state", b'{"v":1,"d":"bike-1","t":1,"floor":300000000}')
        attacker.send(1)
        for seq in range(6, 11):
            bike2.send(seq)
            bike3.send(seq - 5)
        assert seqs_of(wait_records(stack, "bike-2", 10, timeout=30)) == list(range(1, 11))
        assert seqs_of(wait_records(stack, "bike-3", 5, timeout=30)) == list(range(1, 6))
        assert seqs_of(wait_records(stack, "bike-1", 1, timeout=30)) == [1]
    status = stack.gateway_status() or {}
    ingest = status["ingest"]
    assert ingest["rejected"] == 2, ingest["reject_reasons"]
    assert all("2**53-1" in reason for reason in ingest["reject_reasons"])
    assert ingest["connects"] == 1 and status["worker_restarts"]["ingest"] == 0
    assert ingest["dropped_on_device"] == 0  # a floor beyond anything sent skips nothing
    stack.wait_until(lambda: (stack.gateway_status() or {})["spool"]["batches"] == 0,
                     timeout=20, what="an empty spool")
    assert (stack.gateway_status() or {})["uplink"]["failures"] == 0
    assert_private(stack)


def assert_private(stack: Stack) -> None:
    """Telemetry is personal data: databases, broker persistence and logs are owner-only."""
    holding_data = [p for p in stack.home.rglob("*") if p.is_file() and (
        p.suffix in (".db", ".log") or p.name.endswith(("-wal", "-shm")) or "data" in p.parts)]
    assert len(holding_data) >= 5
    exposed = [str(p.relative_to(stack.home)) for p in holding_data if p.stat().st_mode & 0o077]
    assert exposed == []
    for db in (stack.home / "cloud" / "cloud.db",
               stack.home / "gateways" / stack.gateway_id / "gateway.db"):
        assert db.stat().st_mode & 0o777 == 0o600
        assert db.parent.stat().st_mode & 0o777 == 0o700


# -- property: whatever one device sends, the others keep flowing ------------------------------

ints = st.one_of(st.integers(-5, 5), st.integers(2**53 - 3, 2**53 + 3), st.integers(2**63 - 2, 2**64),
                 st.integers(1, 2**53 - 1), st.just(-(2**63)))
scalars = st.one_of(st.none(), st.booleans(), ints, st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False))
metric_names = st.one_of(st.from_regex(r"\A[a-z0-9_]{1,32}\Z"), st.text(max_size=40))
metrics = st.dictionaries(metric_names, scalars, max_size=40)


@st.composite
def record_like(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = {"v": draw(st.sampled_from([1, 1, 1, 2, "1"])),
                           "d": draw(st.sampled_from(["bike-1", "bike-1", "bike-2", "a/b", ""])),
                           "s": draw(ints), "t": draw(ints), "m": draw(metrics)}
    for key in draw(st.lists(st.sampled_from(["v", "d", "s", "t", "m", "zz"]), max_size=2)):
        if key == "zz":
            obj["zz"] = 1
        else:
            obj.pop(key, None)
    text = json.dumps(obj, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    return (text + " " * draw(st.sampled_from([0, 0, 1500]))).encode()


@st.composite
def state_like(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = {"v": 1, "d": "bike-1", "t": draw(ints)}
    for field in draw(st.lists(st.sampled_from(["floor", "seq", "dropped", "heap_free", "fw",
                                                "config_status", "bogus"]), max_size=3)):
        obj[field] = draw(st.one_of(ints, st.text(max_size=5)))
    return json.dumps(obj).encode()


payloads = st.lists(st.one_of(
    st.tuples(st.just("telemetry"), record_like()),
    st.tuples(st.just("state"), state_like()),
    st.tuples(st.sampled_from(["telemetry", "state", "status"]), st.binary(max_size=3000)),
), min_size=1, max_size=8)


def test_whatever_one_device_sends_the_others_keep_flowing(stack: Stack) -> None:
    """Payloads of every shape and size from bike-1: what the gateway acks, the cloud stores
    (or quarantines record by record); no batch is refused for what one record holds, and
    bike-2's records arrive after each round."""
    stack.start_path(["bike-1", "bike-2"])
    accepted: set[int] = set()
    rounds = {"n": 0}
    with devices(stack, "bike-1", "bike-2") as (attacker, bike2):

        @settings(max_examples=6, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(payloads)
        def round_trip(batch: list[tuple[str, bytes]]) -> None:
            rounds["n"] += 1
            for kind, payload in batch:
                attacker.publish(kind, payload)
                if kind == "telemetry":
                    try:
                        rec = record.decode(payload)
                    except ValueError:
                        continue
                    if rec["d"] == "bike-1":
                        accepted.add(rec["s"])
                elif kind == "state":
                    try:
                        state.decode(payload)
                    except ValueError:
                        pass
            bike2.send(rounds["n"])
            wait_records(stack, "bike-2", rounds["n"], timeout=20)

        round_trip()
    stack.wait_until(lambda: (stack.gateway_status() or {})["spool"]["batches"] == 0,
                     timeout=20, what="an empty spool")
    status = stack.gateway_status() or {}
    assert status["uplink"]["failures"] == 0 and status["spool"]["dead_letters"] == 0
    assert status["worker_restarts"]["ingest"] == 0
    stored = set(seqs_of(stack.telemetry("bike-1")))
    with stack.admin() as admin:
        held = {q["seq"] for q in admin.get("/api/v1/devices/bike-1/quarantine",
                                            params={"limit": 1000}).json()
                if q["kind"] == "record"}
    assert accepted <= stored | held, "every record the gateway acked is stored or quarantined"
    assert seqs_of(stack.telemetry("bike-2")) == list(range(1, rounds["n"] + 1))
