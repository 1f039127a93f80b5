"""The gateways' aggregate records in the cloud (cloud.services.aggregates), on SQLite and
PostgreSQL: stored from a verified version 3 batch exactly once, served to analysts, held in
quarantine when they are malformed or speak for a device the gateway does not serve, screened
by the device's consent (also after the fact), and raw records kept at the gateway are shown as
such."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import httpx
from cloudkit import (
    ADMIN,
    T0,
    GatewaySim,
    api_token,
    bearer,
    consent,
    enrol,
    record_key,
    signed,
    signed_state,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient

from protocol import aggregate as agg
from protocol.batch import CONTENT_TYPE, Batch, seal

KEY = record_key(1)
WINDOW = T0 - T0 % 60_000


def summary(device: str, first: int, last: int, raw: str = agg.RAW_SENT,
            start: int = WINDOW, **metrics: list[Any]) -> dict[str, Any]:
    stats: dict[str, agg.Stat] = {}
    for name, xs in (metrics or {"power": [200, 210]}).items():
        for x in xs:
            stats = agg.fold_metrics(stats, {name: x})
    return agg.Aggregate(device, 1, "bike", start, 60, last - first + 1, first, last, raw,
                         stats).to_obj()


def push(gw: GatewaySim, records: list[str] = (), states: list[str] = (),  # type: ignore[assignment]
         aggregates: list[Any] = ()) -> httpx.Response:  # type: ignore[assignment]
    sealed = seal(Batch(gateway=gw.id, seq=gw.seq + 1, prev=gw.prev, created_ms=T0,
                        records=tuple(records), states=tuple(states), version=3,
                        aggregates=tuple(aggregates)), gw.key)
    r = gw.post(sealed)
    if r.status_code == 200:
        gw.seq, gw.prev = sealed.seq, sealed.digest
        gw.sent.append(sealed)
    return r


def page(client: TestClient, device: str, headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    r = client.get(f"/api/v1/devices/{device}/aggregates", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def quarantine(client: TestClient) -> list[dict[str, Any]]:
    r = client.get("/api/v1/quarantine", headers=ADMIN)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def _bike(client: TestClient, gateway: GatewaySim, **state: Any) -> None:
    enrol(client, "bike-1", KEY)
    r = push(gateway, [signed("bike-1", 1, KEY)],
             [signed_state("bike-1", KEY, profile="bike", **state)])
    assert r.status_code == 200 and r.json()["quarantined"] == 0, r.text


def test_aggregates_of_a_verified_batch_are_stored_once_and_served_to_analysts(
        app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    _bike(client, gateway)
    one = summary("bike-1", 1, 2, power=[200, 210])
    r = push(gateway, [signed("bike-1", 2, KEY)], aggregates=[one])
    assert r.status_code == 200 and r.json()["stored"] == 1 and r.json()["quarantined"] == 0
    assert gateway.post(gateway.sent[-1]).status_code == 200  # the same batch again: a replay
    assert push(gateway, aggregates=[one]).status_code == 200  # the same identity: a duplicate
    analyst = bearer(api_token(app, "analyst"))
    body = page(client, "bike-1", analyst)
    (got,) = body["aggregates"]
    assert got["start"] == WINDOW and got["n"] == 2 and got["gateway"] == gateway.id
    assert got["m"]["power"] == {"n": 2, "min": 200, "max": 210, "mean": 205.0, "last": 210}
    assert body["raw_kept_at_gateway"] == {"records": 0, "windows": 0, "gateways": []}
    customer = bearer(api_token(app, "customer"))
    assert client.get("/api/v1/devices/bike-1/aggregates", headers=customer).status_code == 403


def test_a_bad_or_foreign_aggregate_is_quarantined_and_the_rest_stored(
        client: TestClient, gateway: GatewaySim) -> None:
    _bike(client, gateway)
    bad = {**summary("bike-1", 3, 4), "window_s": 0}
    stranger = summary("bike-9", 1, 2)  # never delivered anything of its own here
    r = push(gateway, aggregates=[bad, stranger, summary("bike-1", 1, 2)])
    assert r.status_code == 200 and r.json()["quarantined"] == 2, r.text
    reasons = {q["reason"] for q in quarantine(client)}
    assert any("window_s" in why for why in reasons)
    assert "device bike-9 is not served by gateway gw-1: an aggregate never assigns a device" \
        in reasons
    assert [a["first_seq"] for a in page(client, "bike-1")["aggregates"]] == [1]
    assert client.get("/api/v1/devices/bike-9", headers=ADMIN).status_code == 404


def test_consent_screens_aggregates_on_arrival_and_after_a_narrowing(
        client: TestClient, gateway: GatewaySim) -> None:
    _bike(client, gateway)
    assert push(gateway, [consent("bike-1", 2, KEY, "personal")],
                aggregates=[summary("bike-1", 1, 2, power=[1, 2], heart_rate=[140, 150])]
                ).status_code == 200
    assert set(page(client, "bike-1")["aggregates"][0]["m"]) == {"power", "heart_rate"}
    # the customer narrows from their account: stored aggregates lose the personal metric
    r = client.put("/api/v1/devices/bike-1/consent", json={"tier": "usage"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert set(page(client, "bike-1")["aggregates"][0]["m"]) == {"power"}
    audit = client.get("/api/v1/devices/bike-1/consent", headers=ADMIN).json()["audit"]
    assert any("heart_rate" in a["fields"] for a in audit)
    # ... and so do aggregates that arrive later, summarised before the gateway heard of it
    assert push(gateway, aggregates=[summary("bike-1", 3, 4, start=WINDOW + 60_000,
                                             power=[3, 4], heart_rate=[160, 170])]
                ).status_code == 200
    assert [set(a["m"]) for a in page(client, "bike-1")["aggregates"]] == [{"power"}, {"power"}]


def test_raw_records_kept_at_the_gateway_are_shown_as_kept_not_missing(
        client: TestClient, gateway: GatewaySim) -> None:
    enrol(client, "bike-1", KEY)
    # a product whose raw records stay local: only the device's state reaches the cloud
    assert push(gateway, states=[signed_state("bike-1", KEY, profile="bike")]).status_code == 200
    assert push(gateway, aggregates=[summary("bike-1", 1, 30, agg.RAW_LOCAL),
                                     summary("bike-1", 31, 40, agg.RAW_LOCAL,
                                             start=WINDOW + 60_000)]).status_code == 200
    body = page(client, "bike-1")
    assert body["raw_kept_at_gateway"] == {"records": 40, "windows": 2, "gateways": ["gw-1"]}
    assert [a["raw"] for a in body["aggregates"]] == ["local", "local"]
    html = client.get("/devices/bike-1", headers=ADMIN,
                      params={"from_ms": WINDOW - 60_000, "to_ms": WINDOW + 180_000})
    assert html.status_code == 200
    text = " ".join(html.text.split())
    assert "40 raw records kept at gateway" in text and ">gw-1<" in text
    assert "nothing is missing" in text and text.count("<td>local</td>") == 2


def test_the_shared_vector_chain_then_its_version_3_link_is_accepted(
        client: TestClient) -> None:
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "batches.json").read_text())
    token = client.post("/api/v1/gateways", json={"id": "gw-1", "public_key":
                        vectors["public_key"]}, headers=ADMIN).json()["token"]
    key = json.loads((Path(__file__).parents[1] / "vectors" / "records.json").read_text())[
        "record_key"]
    for device in ("bike-1", "mirror-7", "engine-1"):
        assert client.post("/api/v1/devices", json={"id": device, "product": "bike",
                                                    "record_key": key},
                           headers=ADMIN).status_code == 201
    for link in (*vectors["chain"], vectors["aggregate_link"]):
        r = client.post("/api/v1/ingest", content=zlib.compress(link["canonical"].encode()),
                        headers={"Content-Type": CONTENT_TYPE, "X-Fleetloop-Gateway": "gw-1",
                                 "X-Fleetloop-Signature": link["signature"],
                                 "Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["quarantined"] == 0, r.text
    (got,) = page(client, "bike-1")["aggregates"]
    assert got["n"] == 1 and got["m"]["power"]["mean"] == 212.5


def test_cloud_ops_set_a_products_mode_and_gateways_fetch_it(
        app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    ops = bearer(api_token(app, "ops"))
    assert client.put("/api/v1/aggregation/bike", json={"mode": "60"}, headers=ops).json()[
        "mode"] == "60"
    r = client.put("/api/v1/aggregation/mirror", json={"mode": "300:local"}, headers=ops)
    assert r.status_code == 200 and r.json()["updated_by"] == "ops-token"
    for bad, words in (("0", "window"), ("60:remote", "suffix"), ("soon", "use raw")):
        r = client.put("/api/v1/aggregation/bike", json={"mode": bad}, headers=ops)
        assert r.status_code == 422 and words in r.text, r.text
    assert client.put("/api/v1/aggregation/Bike!", json={"mode": "60"},
                      headers=ops).status_code == 422
    feed = client.get("/api/v1/gateway/aggregation", headers=bearer(gateway.token))
    assert feed.json() == {"products": {"bike": "60", "mirror": "300:local"}}
    assert [m["product"] for m in client.get("/api/v1/aggregation", headers=ops).json()] == [
        "bike", "mirror"]
    analyst = bearer(api_token(app, "analyst"))
    assert client.put("/api/v1/aggregation/bike", json={"mode": "raw"},
                      headers=analyst).status_code == 403
