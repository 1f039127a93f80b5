"""Record identity (device, incarnation, seq): a wiped device starts again at seq 1 in a new
incarnation; the same identity with other content is a conflict, reported, never dropped."""

from __future__ import annotations

from typing import Any

from cloudkit import ADMIN, INCARNATION, GatewaySim, enrol, rec, record_key, signed
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.services.identity import CONFLICT

KEY = record_key()
WIPED = 7654321  # the incarnation the device draws after a wipe


def device(client: TestClient, device_id: str = "bike-1") -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/v1/devices/{device_id}", headers=ADMIN).json()
    return body


def held(client: TestClient, device_id: str = "bike-1") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        f"/api/v1/devices/{device_id}/quarantine", headers=ADMIN).json()
    return items


def telemetry(client: TestClient, device_id: str = "bike-1", **params: Any) -> Any:
    return client.get(f"/api/v1/devices/{device_id}/telemetry", params=params, headers=ADMIN)


def page_all(client: TestClient, limit: int) -> list[tuple[int, int]]:
    """Every record, paged with the last record's (incarnation, seq) as the cursor."""
    out: list[tuple[int, int]] = []
    cursor: dict[str, int] = {}
    while True:
        r = telemetry(client, limit=limit, **cursor)
        assert r.status_code == 200, r.text
        page = r.json()["records"]
        assert len(page) <= limit
        if not page:
            return out
        out += [(x["incarnation"], x["seq"]) for x in page]
        cursor = {"after_incarnation": page[-1]["incarnation"], "after_seq": page[-1]["seq"]}


def test_a_wiped_device_starts_again_at_seq_1(client: TestClient, gateway: GatewaySim) -> None:
    enrol(client, "bike-1", KEY)
    gateway.push([signed("bike-1", s, KEY, power=s) for s in (1, 2, 3)])
    r = gateway.push([signed("bike-1", s, KEY, incarnation=WIPED, power=100 + s) for s in (1, 2)])
    assert r.json() == {"stored": 2, "duplicates": 0, "quarantined": 0, "seq": 2}
    got = device(client)
    assert (got["records"], got["incarnation"], got["last_seq"]) == (5, WIPED, 2)
    assert got["last_metrics"] == {"power": 102}
    # a late record of the older life is stored but does not count as the latest
    gateway.push([signed("bike-1", 4, KEY, power=4)])
    got = device(client)
    assert (got["records"], got["incarnation"], got["last_seq"]) == (6, WIPED, 2)
    assert got["last_metrics"] == {"power": 102}
    # paged in the order the incarnations arrived (not by their random numbers), then by seq
    assert page_all(client, 2) == [(INCARNATION, s) for s in (1, 2, 3, 4)] + [
        (WIPED, 1), (WIPED, 2)]
    assert INCARNATION < WIPED  # ... and the other way round:
    enrol(client, "bike-2", KEY)
    gateway.push([signed("bike-2", 1, KEY, incarnation=WIPED)])
    gateway.push([signed("bike-2", 1, KEY, incarnation=INCARNATION)])
    pages = telemetry(client, "bike-2").json()["records"]
    assert [(x["incarnation"], x["seq"]) for x in pages] == [(WIPED, 1), (INCARNATION, 1)]


def test_paging_refuses_a_cursor_that_names_no_record(client: TestClient, gateway: GatewaySim) -> None:
    enrol(client, "bike-1", KEY)
    gateway.push([signed("bike-1", s, KEY) for s in (1, 2, 3)])
    # one incarnation: after_seq alone works as before
    r = telemetry(client, after_seq=1)
    assert [x["seq"] for x in r.json()["records"]] == [2, 3]
    gateway.push([signed("bike-1", 1, KEY, incarnation=WIPED)])
    r = telemetry(client, after_seq=1)
    assert r.status_code == 400 and "after_incarnation" in r.json()["detail"]
    assert [x["seq"] for x in telemetry(client, after_seq=0).json()["records"]] == [1, 2, 3, 1]
    r = telemetry(client, after_incarnation=99, after_seq=0)
    assert r.status_code == 400 and "no records of incarnation 99" in r.json()["detail"]
    r = telemetry(client, after_incarnation=INCARNATION, after_seq=3)
    assert [(x["incarnation"], x["seq"]) for x in r.json()["records"]] == [(WIPED, 1)]
    assert telemetry(client, after_incarnation=-1).status_code == 422
    assert telemetry(client, after_incarnation=2**31).status_code == 422


def test_replaying_an_old_record_with_new_content_is_a_conflict(
    app: FastAPI, client: TestClient, gateway: GatewaySim
) -> None:
    enrol(client, "bike-1", KEY)
    original = signed("bike-1", 1, KEY, power=100)
    gateway.push([original, signed("bike-1", 2, KEY)])
    # the same identity, other content, tagged by the device's key (a device that reused a
    # seq after losing its buffer without drawing a new incarnation, or a leaked key)
    rewritten = signed("bike-1", 1, KEY, power=666)
    r = gateway.push([rewritten])
    assert r.json() == {"stored": 0, "duplicates": 0, "quarantined": 1, "seq": 2}
    (item,) = held(client)
    assert item["reason"] == CONFLICT.format(
        device="bike-1", incarnation=INCARNATION, seq=1, what="metrics")
    assert item["reason"].startswith("conflict:") and item["body"] == rewritten
    got = device(client)
    assert (got["conflicts"], got["quarantined"], got["records"]) == (1, 1, 2)
    first = telemetry(client).json()["records"][0]
    assert first["m"] == {"power": 100}  # the stored record is kept
    # the same bytes again are a plain duplicate, not a conflict
    r = gateway.push([original])
    assert r.json() == {"stored": 0, "duplicates": 1, "quarantined": 0, "seq": 3}
    # other time, same metrics; and a conflict inside one batch
    r = gateway.push([signed("bike-1", 2, KEY, t=5), signed("bike-1", 3, KEY),
                      signed("bike-1", 3, KEY, power=1)])
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 2, "seq": 4}
    reasons = [i["reason"] for i in held(client)][:2]
    assert "other metrics" in reasons[0] and "other time" in reasons[1]
    assert device(client)["conflicts"] == 3
    listed = {d["id"]: d for d in client.get("/api/v1/devices", headers=ADMIN).json()}
    assert listed["bike-1"]["conflicts"] == 3


def test_untagged_records_conflict_too(client: TestClient, gateway: GatewaySim) -> None:
    gateway.push([rec("bike-1", 1, power=1)])
    r = gateway.push([rec("bike-1", 1, power=2), rec("bike-1", 1, power=1)])
    assert r.json() == {"stored": 0, "duplicates": 1, "quarantined": 1, "seq": 2}
    assert held(client)[0]["reason"] == CONFLICT.format(
        device="bike-1", incarnation=0, seq=1, what="metrics")
    assert device(client)["conflicts"] == 1


def test_metric_types_count_as_content(client: TestClient, gateway: GatewaySim) -> None:
    gateway.push([rec("bike-1", 1, on=1)])
    r = gateway.push([rec("bike-1", 1, on=True), rec("bike-1", 1, on=1.0)])
    assert r.json()["quarantined"] == 2


def test_identities_far_apart_in_one_batch(client: TestClient, gateway: GatewaySim) -> None:
    far = [1, 2, 5000, 10**9, 2**53 - 1]
    records = [rec("bike-1", s, t=s % 1000, power=s % 7) for s in far]
    assert gateway.push(records).json()["stored"] == 5
    r = gateway.push(records + [rec("bike-1", 10**9, t=0, power=1)])
    assert r.json() == {"stored": 0, "duplicates": 5, "quarantined": 1, "seq": 2}
