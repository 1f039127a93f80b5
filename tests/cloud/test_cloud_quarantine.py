"""Per-record quarantine: one bad record or state never refuses its batch; it is kept aside with
its reason, counted, listed, and the rest of the batch is stored."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from cloudkit import ADMIN, T0, GatewaySim, counts, rec, state
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.services.quarantine import MAX_BODY_CHARS
from protocol.batch import record_problem, state_problem
from protocol.bounds import MAX_SEQ


def quarantine(client: TestClient, device: str | None = None) -> list[dict[str, Any]]:
    path = "/api/v1/quarantine" if device is None else f"/api/v1/devices/{device}/quarantine"
    r = client.get(path, headers=ADMIN)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()
    return items


BAD_RECORDS = [
    ({**rec("bike-1", 2), "t": -1}, "t must be an int in 0..2**53-1"),
    ({**rec("bike-1", 3), "s": MAX_SEQ + 1}, "seq must be an int in 1..2**53-1"),
    ({**rec("bike-1", 4), "m": {"power": 2**53}}, "metric values"),
    ({**rec("bike-1", 5), "x": 1}, "unknown record field"),
    ({**rec("bike-1", 6), "v": 3}, "record version unsupported"),
    ({**rec("bike-1", 7), "m": {"Power": 1}}, "bad metric name"),
    ("not a record", "record must be an object"),
]


def test_each_bad_record_is_held_with_its_reason(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    good = [rec("bike-1", 1), rec("bike-1", 8), rec("mirror-1", 1)]
    r = gateway.push_raw([good[0], *(bad for bad, _ in BAD_RECORDS), *good[1:]])
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": 3, "duplicates": 0, "quarantined": len(BAD_RECORDS), "seq": 1}
    held = list(reversed(quarantine(client)))  # oldest first = batch order
    assert len(held) == len(BAD_RECORDS)
    for item, (bad, reason) in zip(held, BAD_RECORDS, strict=True):
        assert reason in item["reason"], (item, reason)
        assert item["body"] == json.dumps(bad, sort_keys=True, separators=(",", ":"))
        assert item["kind"] == "record" and item["gateway"] == "gw-1" and item["batch_seq"] == 1
        assert item["received_ms"] == T0
    assert [i["seq"] for i in held] == [2, MAX_SEQ + 1, 4, 5, 6, 7, None]
    assert [i["device"] for i in held][-1] is None  # no device id: listed fleet-wide only
    assert len(quarantine(client, "bike-1")) == len(BAD_RECORDS) - 1
    device = client.get("/api/v1/devices/bike-1", headers=ADMIN).json()
    assert (device["records"], device["quarantined"], device["last_seq"]) == (2, 6, 8)
    listed = {d["id"]: d["quarantined"] for d in client.get("/api/v1/devices", headers=ADMIN).json()}
    assert listed == {"bike-1": 6, "mirror-1": 0}


def test_bad_states_are_held_and_do_not_become_reported_state(
    client: TestClient, gateway: GatewaySim
) -> None:
    good = state("bike-1", t=T0, config_status="none")
    bad = [{**good, "t": 2**63}, {**good, "heap_free": -1}, {**good, "colour": "red"},
           {"v": 1, "d": "no/such id"}]
    r = gateway.push_raw([], [good, *bad])
    assert r.json() == {"stored": 0, "duplicates": 0, "quarantined": 4, "seq": 1}
    held = quarantine(client)
    assert {i["kind"] for i in held} == {"state"}
    assert {i["device"] for i in held} == {"bike-1", None}
    assert all(i["seq"] is None for i in held)
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).json()["reported"] == good


def test_a_huge_item_is_kept_truncated(client: TestClient, gateway: GatewaySim) -> None:
    huge = {**rec("bike-1", 1), "m": {f"m{i}": i for i in range(2000)}}
    assert gateway.push_raw([huge]).json()["quarantined"] == 1
    (item,) = quarantine(client, "bike-1")
    assert item["reason"] == "too many metrics"
    assert len(item["body"]) == MAX_BODY_CHARS and item["body"].endswith("...")


def test_a_nul_in_a_devices_text_is_held_escaped(client: TestClient, gateway: GatewaySim) -> None:
    # PostgreSQL's text cannot hold a NUL: it once failed the whole batch with a 500, which
    # the gateway would have retried for ever with every record behind it
    good = json.dumps(rec("bike-1", 1), separators=(",", ":"))
    r = gateway.push(["\x00" + good[1:], good[:-1] + ',"x":"\x00"}'])
    assert r.status_code == 200, r.text
    assert r.json()["quarantined"] == 2
    bodies = sorted(row["body"] for row in quarantine(client))
    assert bodies == sorted(["\\x00" + good[1:], good[:-1] + ',"x":"\\x00"}'])


@pytest.mark.parametrize("path", ["/api/v1/quarantine", "/api/v1/devices/bike-1/quarantine"])
def test_quarantine_listings_need_admin_and_page(
    client: TestClient, gateway: GatewaySim, path: str
) -> None:
    gateway.push_raw([rec("bike-1", 1), *({**rec("bike-1", s), "t": -1} for s in range(2, 6))])
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {gateway.token}"}).status_code == 403
    r = client.get(path, params={"limit": 2}, headers=ADMIN)
    assert [i["seq"] for i in r.json()] == [5, 4]  # newest first
    assert client.get(path, params={"limit": 0}, headers=ADMIN).status_code == 422
    assert client.get("/api/v1/devices/nope/quarantine", headers=ADMIN).status_code == 404


# -- the property: whatever a signed, chained batch holds, nothing but its items is judged ----

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["\ud800", "x\udfff"]),  # in JSON, but no Unicode text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
ints = st.one_of(st.integers(min_value=-2, max_value=2**64), st.sampled_from([0, 1, MAX_SEQ, MAX_SEQ + 1]))
record_like = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 2]), "d": st.sampled_from(["bike-1", "bike-2", "", "a/b"]),
     "s": ints, "t": ints,
     "m": st.dictionaries(st.sampled_from(["power", "hr", "BAD"]), json_leaf, max_size=3)},
    optional={"x": json_leaf},
)
state_like = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 2]), "d": st.sampled_from(["bike-1", "bike-2", "-x"])},
    optional={"t": ints, "seq": ints, "heap_free": ints, "fw": json_leaf, "impl": json_leaf,
              "config_status": st.sampled_from(["none", "applied", "bogus"])},
)
_seqs = itertools.count(1)


def storable_state(obj: Any) -> bool:
    """Valid by the protocol, and all its text is Unicode (no lone surrogates)."""
    if state_problem(obj, 1) is not None:
        return False
    try:
        json.dumps(obj, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    device = draw(st.sampled_from(["bike-1", "bike-2", "mirror-1"]))
    return rec(device, next(_seqs), t=draw(st.integers(0, MAX_SEQ)))


@st.composite
def valid_states(draw: st.DrawFn) -> dict[str, Any]:
    """States the protocol accepts."""
    text = st.text(max_size=8)
    return state(draw(st.sampled_from(["bike-1", "bike-2"])), t=draw(st.integers(0, MAX_SEQ)),
                 fw=draw(text), config_status=draw(st.sampled_from(["none", "applied"])))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=st.lists(st.one_of(valid_records(), record_like, json_value), max_size=8),
       states=st.lists(st.one_of(valid_states(), state_like, json_value), max_size=4))
def test_any_items_in_a_signed_batch_are_stored_or_quarantined(
    app: FastAPI, gateway: GatewaySim, records: list[Any], states: list[Any]
) -> None:
    before = counts(app)
    r = gateway.push_raw(records, states)
    assert r.status_code == 200, r.text
    valid = [x for x in records if record_problem(x, 1) is None]
    bad = len(records) - len(valid) + sum(1 for x in states if not storable_state(x))
    body = r.json()
    # a valid record whose (device, seq) was stored with other content is a conflict: held too
    conflicts = body["quarantined"] - bad
    assert conflicts >= 0
    assert body["stored"] + body["duplicates"] + conflicts == len(valid)
    after = counts(app)
    assert after["quarantine"] - before["quarantine"] == bad + conflicts
    assert after["telemetry"] - before["telemetry"] == body["stored"]
    with app.state.db.connection() as store:
        for x in valid:  # every valid record is in the store, whoever sent it first
            assert [row.seq for row in store.telemetry(x["d"], 0, x["s"] - 1, 1)] == [x["s"]]
        held = store.quarantine(None, bad + conflicts or 1)[:bad + conflicts]
        assert all(q.reason for q in held)
        assert sum(q.reason.startswith("conflict:") for q in held) == conflicts


def test_a_huge_reason_is_cut_too(client: TestClient, gateway: GatewaySim) -> None:
    # protocol.state names the unknown field in its reason: the field name is the sender's
    assert gateway.push_raw([], [{**state("bike-1"), "x" * 100_000: 1}]).json()["quarantined"] == 1
    (item,) = quarantine(client, "bike-1")
    assert item["reason"].startswith("unknown state field xxx") and len(item["reason"]) == 300


def test_lone_surrogates_are_kept_escaped(app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    # JSON may carry "\ud800", which is no Unicode text: no database or UTF-8 answer takes it.
    good = state("bike-1", fw="0.1.0")
    items = gateway.batch_obj([{"v": 1, "d": "bike-1", "s": 1, "t": 1, "m": "\ud800"}],
                              [{**good, "\udfff": 1}, {**good, "fw": "\ud800"}, good])
    canon = json.dumps(items, sort_keys=True, separators=(",", ":")).encode()
    assert b"\\ud800" in canon
    r = gateway.post(gateway.seal_bytes(canon))
    assert r.status_code == 200, r.text
    assert r.json()["quarantined"] == 3
    reasons = [i["reason"] for i in reversed(quarantine(client, "bike-1"))]
    assert reasons[0] == "metrics must be an object"
    assert "\\udfff" in reasons[1] and "UTF-8" in reasons[2]
    assert "\\ud800" in quarantine(client, "bike-1")[0]["body"]
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).json()["reported"] == good
    assert client.get("/", headers=ADMIN).status_code == 200
