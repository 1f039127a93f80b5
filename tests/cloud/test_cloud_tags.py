"""Every tag verified: a record or state is stored only when it is the device's own."""

from __future__ import annotations

import json
import os
from typing import Any
from unittest import mock

import pytest
from cloudkit import (
    ADMIN,
    INCARNATION,
    GatewaySim,
    enrol,
    rec,
    record_key,
    register,
    signed,
    signed_state,
    state,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.services import tags
from protocol import compiled, tag
from protocol import record as record_codec

KEY = record_key(1)
OTHER = record_key(2)


def device(client: TestClient, device_id: str = "bike-1") -> dict[str, Any]:
    r = client.get(f"/api/v1/devices/{device_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def held(client: TestClient, device_id: str = "bike-1") -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/devices/{device_id}/quarantine", headers=ADMIN)
    items: list[dict[str, Any]] = list(reversed(r.json()))  # oldest first
    return items


def stored(app: FastAPI, device_id: str) -> list[tuple[int, int, dict[str, Any]]]:
    with app.state.db.connection() as store:
        return [(r.incarnation, r.seq, r.m) for r in store.telemetry(device_id, INCARNATION, 0, 100)]


def test_tagged_records_and_state_of_an_enrolled_device_are_stored(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    enrol(client, "bike-1", KEY)
    st = signed_state("bike-1", KEY, fw="0.2.0", config_status="none", seq=2, floor=3)
    r = gateway.push([signed("bike-1", 1, KEY), signed("bike-1", 2, KEY, power=7)], [st])
    assert r.json() == {"stored": 2, "duplicates": 0, "quarantined": 0, "seq": 1}
    got = device(client)
    assert (got["incarnation"], got["last_seq"], got["last_metrics"]) == (INCARNATION, 2, {"power": 7})
    assert got["gateway"] == "gw-1" and got["quarantined"] == 0
    # the reported state is the device's state as parsed, its tag dropped
    assert got["reported"] == {k: v for k, v in json.loads(st).items() if k != "h"}
    assert got["reported"]["i"] == INCARNATION and "h" not in got["reported"]


def test_a_gateway_cannot_alter_or_invent_records_in_a_well_signed_batch(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    """The point of the feature: the batch is correctly signed and chained by its gateway, and
    still the records the gateway changed or made up are caught, one by one."""
    enrol(client, "bike-1", KEY)
    enrol(client, "mirror-1", OTHER, "mirror")
    altered = signed("bike-1", 2, KEY, power=50).replace('"power":50', '"power":51')
    # made up: the right shape, a tag under a key that is not the device's
    invented = record_codec.encode("bike-1", INCARNATION, 3, 1, {"power": 1}, tag.Hmac(OTHER)).decode()
    # made up without any key: a tag of the right format, copied from a genuine record
    genuine = signed("bike-1", 4, KEY)
    copied_tag = genuine.replace('"s":4', '"s":5')
    # a state whose value the gateway changed
    st = signed_state("bike-1", KEY, fw="0.2.0", heap_free=1000).replace("1000", "9000")
    records = [signed("bike-1", 1, KEY), altered, invented, genuine, copied_tag,
               signed("mirror-1", 1, OTHER)]
    r = gateway.push(records, [st])
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": 3, "duplicates": 0, "quarantined": 4, "seq": 1}
    assert [s for _, s, _ in stored(app, "bike-1")] == [1, 4]
    assert [s for _, s, _ in stored(app, "mirror-1")] == [1]
    items = held(client)
    assert [(i["kind"], i["seq"]) for i in items] == [
        ("record", 2), ("record", 3), ("record", 5), ("state", None)]
    for item in items:
        assert item["reason"].startswith("bad tag: not what device bike-1 signed")
    assert items[0]["body"] == altered  # the exact text as it came, for the operator
    got = device(client)
    assert got["quarantined"] == 4 and got["reported"] is None and got["last_seq"] == 4


def test_tagged_items_of_a_device_without_a_key_are_quarantined(
    client: TestClient, gateway: GatewaySim
) -> None:
    r = gateway.push([signed("bike-1", 1, KEY)], [signed_state("bike-1", KEY)])
    assert r.json()["quarantined"] == 2 and r.json()["stored"] == 0
    reasons = {i["reason"] for i in held(client)}
    assert reasons == {tags.NO_KEY.format(device="bike-1")}
    assert "no record key registered for device bike-1" in reasons.pop()
    got = device(client)
    # listed, so the operator sees it; assigned to no gateway on unverifiable items
    assert (got["gateway"], got["records"], got["quarantined"]) == (None, 0, 2)


def test_unsigned_items_of_an_enrolled_device_are_quarantined(
    client: TestClient, gateway: GatewaySim
) -> None:
    enrol(client, "bike-1", KEY)
    # a version 1 batch (an older gateway) with version 1 items
    assert gateway.push([rec("bike-1", 1)], [state("bike-1")]).json()["quarantined"] == 2
    # version 1 wire text inside a version 2 batch
    v1_text = record_codec.encode_v1("bike-1", 2, 5, {"power": 1}).decode()
    assert gateway.push([v1_text, signed("bike-1", 3, KEY)]).json()["quarantined"] == 1
    items = held(client)
    assert [i["reason"] for i in items] == [
        tags.UNSIGNED.format(kind="record", device="bike-1"),
        tags.UNSIGNED.format(kind="state", device="bike-1"),
        tags.UNSIGNED.format(kind="record", device="bike-1"),
    ]
    assert "unsigned (version 1) record from device bike-1, which has a record key" in items[0]["reason"]
    assert device(client)["records"] == 1


def test_older_firmware_migrates_by_enrolment(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    """docs/protocol.md: untagged records count while the device has no key; once it is
    re-provisioned with a key and enrolled, only its tagged records do."""
    assert gateway.push([rec("bike-1", 1), rec("bike-1", 2)]).json()["stored"] == 2
    enrol(client, "bike-1", KEY)
    r = gateway.push([rec("bike-1", 3)])
    assert r.json() == {"stored": 0, "duplicates": 0, "quarantined": 1, "seq": 2}
    r = gateway.push([signed("bike-1", 1, KEY, power=9)])
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 0, "seq": 3}
    got = device(client)
    assert (got["records"], got["incarnation"], got["last_seq"]) == (3, INCARNATION, 1)
    assert got["last_metrics"] == {"power": 9}


def test_one_hmac_per_device_per_batch(
    gateway: GatewaySim, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrol(client, "bike-1", KEY)
    enrol(client, "bike-2", OTHER)
    made: list[bytes] = []

    class Counting(tags.Mac):
        def __init__(self, key: bytes) -> None:
            made.append(key)
            super().__init__(key)

    monkeypatch.setattr(tags, "Mac", Counting)
    records = [signed("bike-1", s, KEY) for s in range(1, 6)]
    records += [signed("bike-2", s, OTHER) for s in range(1, 4)]
    r = gateway.push(records, [signed_state("bike-1", KEY)])
    assert r.json()["stored"] == 8
    assert sorted(made) == sorted([KEY, OTHER])


def test_made_up_records_do_not_claim_a_device_for_their_gateway(
    client: TestClient, gateway: GatewaySim
) -> None:
    enrol(client, "bike-1", KEY)
    key = Ed25519PrivateKey.generate()
    rogue = GatewaySim(client, "gw-2", key, register(client, "gw-2", key))
    forged = record_codec.encode("bike-1", INCARNATION, 1, 1, {"power": 1}, tag.Hmac(OTHER))
    assert rogue.push([forged.decode()]).json()["quarantined"] == 1
    assert device(client)["gateway"] is None
    assert gateway.push([signed("bike-1", 1, KEY)]).json()["stored"] == 1
    assert device(client)["gateway"] == "gw-1"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_change_to_a_tagged_text_keeps_it_out_of_the_store(
    app: FastAPI, client: TestClient, gateway: GatewaySim, data: st.DataObject
) -> None:
    enrol(client, "bike-1", KEY)
    seq = gateway.seq + 1  # a fresh seq per example: nothing is a duplicate
    wire = signed("bike-1", seq, KEY, power=seq, cadence=80)
    at = data.draw(st.integers(0, 10**6)) % len(wire)  # its length depends on the seq
    char = data.draw(st.characters(codec="ascii"))
    if char == wire[at]:
        char = chr(ord(char) ^ 1)
    changed = wire[:at] + char + wire[at + 1:]
    r = gateway.push([changed, signed("bike-1", seq + 10**6, KEY)])
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1 and r.json()["quarantined"] == 1
    with app.state.db.connection() as store:
        assert store.telemetry_between("bike-1", INCARNATION, seq, seq) == []


def _one_by_one(mac: tag.Hmac, items: list[tuple[str, dict[str, Any], bytes | None]]) -> list[int]:
    """protocol.tag's verdict on each item: the reference the cloud's loop must give."""
    return [at for at, (_, obj, wire) in enumerate(items)
            if wire is None or obj.get("v") != 2 or not tag.verify(mac, wire)]


_TAGGED = st.builds(
    lambda seq, power: record_codec.encode("bike-1", INCARNATION, seq, seq, {"power": power},
                                           tag.Hmac(KEY)),
    st.integers(1, 10**9), st.integers(0, 2000))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_TAGGED, st.sampled_from(
    ["keep", "flip", "upper", "short", "v1", "no wire", "head", "quote", "brace", "longer",
     "other key"])), min_size=1,
    max_size=12))
def test_the_batch_verdicts_are_the_one_by_one_verdicts(
    drawn: list[tuple[bytes, str]]
) -> None:
    """Mac.failures checks a batch at once when every item has the tag's shape (its usual
    batch) and item by item otherwise: either way each item gets protocol.tag's verdict."""
    items: list[tuple[str, dict[str, Any], bytes | None]] = []
    for wire, change in drawn:
        obj: dict[str, Any] = {"v": 2}
        if change == "flip":  # a value changed, the tag kept: the shape holds, the HMAC not
            wire = wire.replace(b'"power":', b'"power":1', 1)
        elif change == "upper":  # the same tag in capitals: no tag by protocol.tag's rule
            wire = wire[:-34] + wire[-34:-2].upper() + wire[-2:]
        elif change == "short":
            wire = wire[-30:]
        elif change == "v1":
            obj = {"v": 1}
        elif change == "head":  # the tag member's name changed
            wire = wire.replace(b',"h":"', b',"g":"')
        elif change == "quote":  # the tag member's closing quote changed: no tag member
            wire = wire[:-2] + b"'}"
        elif change == "brace":
            wire = wire[:-1] + b"]"
        elif change == "longer":  # a 33rd hex digit: the member no longer starts 40 from the end
            wire = wire[:-2] + b'0"}'
        elif change == "other key":
            wire = tag.append(tag.Hmac(OTHER), wire[:-40] + b"}")
        items.append(("record", obj, None if change == "no wire" else wire))
    mac = tag.Hmac(KEY)
    expected = _one_by_one(mac, items)
    assert tags.Mac(KEY).failures(items) == expected  # compiled, where it was built
    with mock.patch.object(tags, "_native", None):  # and in Python
        assert tags.Mac(KEY).failures(items) == expected
    wires = tags._version_2_wires(items)
    if all(change in ("keep", "flip", "other key") for _, change in drawn):
        assert wires is not None and tags._tag_shaped(wires)  # the at-once paths were taken
    if wires is not None and compiled.checks is not None:
        assert compiled.checks.tag_failures(mac._inner, mac._outer, wires) == expected


def test_the_compiled_checks_are_built_where_the_tests_require_them() -> None:
    """`make test` requires the compiled checks (FLEETLOOP_REQUIRE_COMPILED=1): a build that
    silently fell back to Python would leave the tests above comparing Python with itself."""
    if os.environ.get("FLEETLOOP_REQUIRE_COMPILED") != "1":
        pytest.skip("FLEETLOOP_REQUIRE_COMPILED is not set")
    assert compiled.checks is not None, "protocol/_fastpath.c was not built: see pyproject.toml"
    assert tags._native is compiled.checks
