"""Consent the customer controls: consent records in the device's stream, what the cloud keeps
at each tier, narrowing from the customer's account, and the audit of every change."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from cloudkit import (
    ADMIN,
    INCARNATION,
    T0,
    GatewaySim,
    consent,
    enrol,
    raw_public,
    rec,
    record_key,
    signed,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from cloud.schemas import Tier
from cloud.services import consent as consent_service
from cloud.services.identity import CONFLICT
from protocol import config as config_codec
from protocol import consent as tiers
from protocol import tag as tag_codec

KEY = record_key()


def bike(seq: int, **metrics: Any) -> str:
    """A record of bike-1 with usage and personal metrics (or `metrics`)."""
    return signed("bike-1", seq, KEY, **(metrics or {"power": 200 + seq, "heart_rate": 120 + seq}))


def device(client: TestClient, device_id: str = "bike-1") -> dict[str, Any]:
    r = client.get(f"/api/v1/devices/{device_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def records(client: TestClient, device_id: str = "bike-1") -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/devices/{device_id}/telemetry", headers=ADMIN)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["records"]
    return out


def view(client: TestClient, device_id: str = "bike-1") -> dict[str, Any]:
    r = client.get(f"/api/v1/devices/{device_id}/consent", headers=ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def put(client: TestClient, tier: object, device_id: str = "bike-1") -> Any:
    return client.put(f"/api/v1/devices/{device_id}/consent", json={"tier": tier}, headers=ADMIN)


def metrics_by_seq(client: TestClient) -> dict[int, dict[str, Any]]:
    return {r["seq"]: r["m"] for r in records(client) if "consent" not in r}


def at_personal(client: TestClient, gateway: GatewaySim, last: int = 6) -> None:
    """bike-1 enrolled, its customer granted personal (seq 1), records 2..last stored."""
    enrol(client, "bike-1", KEY)
    r = gateway.push([consent("bike-1", 1, KEY, "personal"), *(bike(s) for s in range(2, last + 1))])
    assert r.json()["stored"] == last, r.text


def test_the_api_tiers_are_the_protocols() -> None:
    assert typing.get_args(Tier) == tiers.TIERS


def test_a_new_device_widened_on_the_product(client: TestClient, gateway: GatewaySim) -> None:
    enrol(client, "bike-1", KEY)
    assert device(client)["consent"] is None  # never reported: nothing known yet
    r = gateway.push([consent("bike-1", 1, KEY, "usage"), bike(2), bike(3)])
    assert r.json() == {"stored": 3, "duplicates": 0, "quarantined": 0, "seq": 1}
    # a record at usage that somehow carries heart rate keeps none of it
    assert metrics_by_seq(client) == {2: {"power": 202}, 3: {"power": 203}}
    assert device(client)["consent"] == "usage"
    gateway.push([consent("bike-1", 4, KEY, "personal"), bike(5)])
    stream = records(client)
    assert [r["seq"] for r in stream] == [1, 2, 3, 4, 5]  # consent records in the stream
    assert stream[0] == {"incarnation": INCARNATION, "seq": 1, "t": T0 + 1, "m": {},
                         "consent": {"cfg": 0, "origin": "device", "tier": "usage"}}
    assert stream[4]["m"] == {"power": 205, "heart_rate": 125} and "consent" not in stream[4]
    got = device(client)
    assert (got["consent"], got["last_seq"], got["records"]) == ("personal", 5, 5)
    assert got["last_metrics"] == {"power": 205, "heart_rate": 125}
    history = view(client)
    assert {k: history[k] for k in ("device", "tier", "reported", "cap", "cap_version")} == {
        "device": "bike-1", "tier": "personal", "reported": "personal", "cap": None,
        "cap_version": None}
    widened, late, first = history["audit"]  # newest first
    assert (widened["from_tier"], widened["to_tier"], widened["rows"]) == ("usage", "personal", 0)
    assert widened["origin"] == "device"
    assert widened["requested_by"] == f"device consent record {INCARNATION}/4"
    assert (first["from_tier"], first["to_tier"], first["rows"]) == (None, "usage", 0)
    assert (late["requested_by"], late["fields"], late["rows"]) == (
        "late arrival", ["heart_rate"], 2)


def test_a_narrowing_on_the_product_deletes_what_was_stored(
    client: TestClient, gateway: GatewaySim
) -> None:
    at_personal(client, gateway)
    assert device(client)["last_metrics"] == {"power": 206, "heart_rate": 126}
    r = gateway.push([consent("bike-1", 7, KEY, "usage")])
    assert r.json()["stored"] == 1
    assert metrics_by_seq(client) == {s: {"power": 200 + s} for s in range(2, 7)}
    got = device(client)
    assert got["consent"] == "usage" and got["last_metrics"] == {"power": 206}
    narrowed = view(client)["audit"][0]
    assert {k: v for k, v in narrowed.items() if k not in ("id", "at_ms")} == {
        "origin": "device", "requested_by": f"device consent record {INCARNATION}/7",
        "from_tier": "personal", "to_tier": "usage", "fields": ["heart_rate"], "rows": 5}
    assert len(view(client)["audit"]) == 2  # the grant, then this one
    # essential: nothing of any record is kept, not even the usage metrics
    gateway.push([consent("bike-1", 8, KEY, "essential"), bike(9)])
    assert all(m == {} for m in metrics_by_seq(client).values())
    assert device(client)["last_metrics"] == {}


def test_a_record_sampled_before_an_opt_out_arriving_late(
    client: TestClient, gateway: GatewaySim
) -> None:
    at_personal(client, gateway, last=3)
    # the opt-out (seq 6) reaches the cloud before records 4 and 5 sampled ahead of it
    gateway.push([consent("bike-1", 6, KEY, "usage"), bike(7)])
    r = gateway.push([bike(4), bike(5)])
    assert r.json()["stored"] == 2
    assert metrics_by_seq(client) == {s: {"power": 200 + s} for s in (2, 3, 4, 5, 7)}
    assert device(client)["last_metrics"] == {"power": 207}
    late = view(client)["audit"][0]
    assert (late["requested_by"], late["origin"], late["fields"], late["rows"]) == (
        "late arrival", "device", ["heart_rate"], 2)
    assert (late["from_tier"], late["to_tier"]) == ("usage", "usage")
    # the same records sent again are duplicates, not conflicts, though stored with less
    r = gateway.push([bike(4), bike(5)])
    assert r.json() == {"stored": 0, "duplicates": 2, "quarantined": 0, "seq": 4}
    assert device(client)["conflicts"] == 0
    # ... but other values under a stored identity still are conflicts
    r = gateway.push([bike(4, power=1)])
    assert r.json()["quarantined"] == 1 and device(client)["conflicts"] == 1


def test_an_older_consent_record_arriving_late_does_not_override(
    client: TestClient, gateway: GatewaySim
) -> None:
    enrol(client, "bike-1", KEY)
    gateway.push([consent("bike-1", 5, KEY, "usage")])
    gateway.push([consent("bike-1", 2, KEY, "personal"), bike(6)])
    assert device(client)["consent"] == "usage"
    assert metrics_by_seq(client) == {6: {"power": 206}}
    assert [r["seq"] for r in records(client)] == [2, 5, 6]
    # a record of a later incarnation (a wiped device) is newer than any of the older one
    gateway.push([consent("bike-1", 1, KEY, "personal", incarnation=7654321)])
    assert device(client)["consent"] == "personal"


def _open(envelope: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    body: dict[str, Any] = config_codec.open_envelope(envelope.encode(), raw_public(key))
    return body


def feed(client: TestClient, gateway: GatewaySim) -> dict[int, str]:
    r = client.get("/api/v1/gateway/configs", headers={"Authorization": f"Bearer {gateway.token}"})
    return {c["version"]: c["envelope"] for c in r.json()["configs"]}


def test_a_narrowing_from_the_account(
    client: TestClient, gateway: GatewaySim, config_key: Ed25519PrivateKey
) -> None:
    at_personal(client, gateway)
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 500}},
               headers=ADMIN)
    r = put(client, "usage")
    assert r.status_code == 200, r.text
    assert r.json() == {"device": "bike-1", "tier": "usage", "reported": "personal",
                        "cap": "usage", "cap_version": 2}
    body = _open(feed(client, gateway)[2], config_key)
    assert body["consent"] == "usage" and body["settings"] == {"interval_ms": 500}
    assert body["version"] == 2
    assert metrics_by_seq(client) == {s: {"power": 200 + s} for s in range(2, 7)}
    got = device(client)
    assert got["consent"] == "usage" and got["last_metrics"] == {"power": 206}
    audit = view(client)["audit"][0]
    assert {k: v for k, v in audit.items() if k not in ("id",)} == {
        "at_ms": T0, "origin": "cloud", "requested_by": "admin token", "from_tier": "personal",
        "to_tier": "usage", "fields": ["heart_rate"], "rows": 5}
    # records the device still sends at personal before it applies the narrowing
    gateway.push([bike(7)])
    assert metrics_by_seq(client)[7] == {"power": 207}
    # the same tier again: nothing done, no new version
    r = put(client, "usage")
    assert r.status_code == 200 and r.json()["cap_version"] == 2
    assert client.get("/api/v1/devices/bike-1/config", headers=ADMIN).json()["desired"][
        "version"] == 2
    # wider than the effective tier: only the customer does that, on the product
    r = put(client, "personal")
    assert r.status_code == 409
    assert r.json()["detail"] == "consent can only be widened by the customer, on the product"
    # a later ops config carries the narrowing on while the device has not confirmed it: the
    # broker keeps only the latest config, so the narrowing cannot be lost under it
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 900}},
               headers=ADMIN)
    assert _open(feed(client, gateway)[3], config_key)["consent"] == "usage"
    assert view(client)["cap_version"] == 2
    # the device confirms (its consent record of origin cloud): later configs leave consent out
    gateway.push([consent("bike-1", 8, KEY, "usage", origin="cloud", cfg=3)])
    assert view(client)["cap"] is None
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 800}},
               headers=ADMIN)
    assert "consent" not in _open(feed(client, gateway)[4], config_key)


def test_a_narrowing_from_the_account_of_a_device_without_config(
    client: TestClient, gateway: GatewaySim, config_key: Ed25519PrivateKey
) -> None:
    at_personal(client, gateway, last=2)
    r = put(client, "essential")
    assert r.status_code == 200 and r.json()["cap_version"] == 1
    body = _open(feed(client, gateway)[1], config_key)
    assert (body["settings"], body["consent"]) == ({}, "essential")
    assert metrics_by_seq(client) == {2: {}}


@pytest.mark.parametrize("tier", ["everything", "", None, 1, "Usage"])
def test_unknown_tiers_are_refused_at_the_boundary(
    client: TestClient, gateway: GatewaySim, tier: object
) -> None:
    at_personal(client, gateway, last=2)
    assert put(client, tier).status_code == 422
    assert client.put("/api/v1/devices/bike-1/consent", json={"tier": "usage", "x": 1},
                      headers=ADMIN).status_code == 422
    assert view(client)["cap"] is None


def test_consent_needs_a_device_and_the_admin(client: TestClient, gateway: GatewaySim) -> None:
    assert put(client, "usage", "bike-9").status_code == 404
    assert client.get("/api/v1/devices/bike-9/consent", headers=ADMIN).status_code == 404
    enrol(client, "bike-1", KEY)
    for headers, status in (({}, 401), ({"Authorization": f"Bearer {gateway.token}"}, 403)):
        assert client.put("/api/v1/devices/bike-1/consent", json={"tier": "usage"},
                          headers=headers).status_code == status
        assert client.get("/api/v1/devices/bike-1/consent", headers=headers).status_code == status


def test_the_device_applying_the_cap_lifts_it(client: TestClient, gateway: GatewaySim) -> None:
    at_personal(client, gateway, last=2)
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 500}},
               headers=ADMIN)
    assert put(client, "usage").json()["cap_version"] == 2
    # the customer taps personal again on the product before the device has the narrowing
    gateway.push([consent("bike-1", 3, KEY, "personal", cfg=1), bike(4)])
    assert view(client)["cap"] == "usage" and device(client)["consent"] == "usage"
    assert metrics_by_seq(client)[4] == {"power": 204}
    # the device applies version 2: its consent record says so, the cap goes
    gateway.push([consent("bike-1", 5, KEY, "usage", origin="cloud", cfg=2), bike(6)])
    got = view(client)
    assert (got["tier"], got["reported"], got["cap"], got["cap_version"]) == (
        "usage", "usage", None, None)
    # from now on the device's word is the truth: a widening on the product is honoured
    gateway.push([consent("bike-1", 7, KEY, "personal", cfg=2), bike(8)])
    assert device(client)["consent"] == "personal"
    assert metrics_by_seq(client)[8] == {"power": 208, "heart_rate": 128}
    widened = view(client)["audit"][0]
    assert (widened["from_tier"], widened["to_tier"], widened["rows"], widened["origin"]) == (
        "usage", "personal", 0, "device")


def test_a_consent_record_with_a_bad_tag_changes_nothing(
    client: TestClient, gateway: GatewaySim
) -> None:
    at_personal(client, gateway, last=3)
    forged = consent("bike-1", 4, KEY, "usage").replace('"usage"', '"essential"')
    made_up = consent("bike-1", 5, record_key(2), "essential")
    r = gateway.push([forged, made_up, bike(6)])
    assert r.json() == {"stored": 1, "duplicates": 0, "quarantined": 2, "seq": 2}
    held = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert [h["reason"].startswith("bad tag") for h in held] == [True, True]
    assert device(client)["consent"] == "personal"
    assert metrics_by_seq(client)[6] == {"power": 206, "heart_rate": 126}
    assert len(view(client)["audit"]) == 1  # the grant only


def test_conflicts_on_a_consent_identity(client: TestClient, gateway: GatewaySim) -> None:
    at_personal(client, gateway, last=2)
    # the same consent record again: a duplicate
    assert gateway.push([consent("bike-1", 1, KEY, "personal")]).json()["duplicates"] == 1
    # another consent, or a metric record, under its identity: conflicts, the stored one stays
    r = gateway.push([consent("bike-1", 1, KEY, "usage"),
                      signed("bike-1", 1, KEY, t=T0 + 100, power=1)])
    assert r.json() == {"stored": 0, "duplicates": 0, "quarantined": 2, "seq": 3}
    # ... and a consent record under a metric record's identity
    r = gateway.push([consent("bike-1", 2, KEY, "essential", t=T0)])
    assert r.json()["quarantined"] == 1
    got = device(client)
    assert (got["conflicts"], got["quarantined"], got["consent"]) == (3, 3, "personal")
    held = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert {h["reason"] for h in held} == {
        CONFLICT.format(device="bike-1", incarnation=INCARNATION, seq=1, what="consent"),
        CONFLICT.format(device="bike-1", incarnation=INCARNATION, seq=1, what="time and consent"),
        CONFLICT.format(device="bike-1", incarnation=INCARNATION, seq=2, what="time and consent"),
    }


def _unknown_tier(seq: int) -> str:
    signed_text = consent("bike-1", seq, KEY, "usage").rsplit(',"h":', 1)[0] + "}"
    text = signed_text.replace('"usage"', '"everything"')
    return tag_codec.append(tag_codec.Hmac(KEY), text.encode()).decode()


def test_an_unknown_tier_never_reaches_the_store(client: TestClient, gateway: GatewaySim) -> None:
    at_personal(client, gateway, last=2)
    r = gateway.push([_unknown_tier(3), bike(4), signed("bike-2", 1, KEY)])
    assert r.json()["stored"] == 1 and r.json()["quarantined"] == 2
    held = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert held[0]["reason"] == "unknown consent tier" and held[0]["seq"] == 3
    assert '"everything"' in held[0]["body"]
    assert device(client)["consent"] == "personal"
    assert [r["seq"] for r in records(client)] == [1, 2, 4]


def test_devices_without_consent_records_are_stored_as_sent(
    client: TestClient, gateway: GatewaySim
) -> None:
    # older firmware: version 1 records, no key, no consent
    gateway.push([rec("bike-7", 1, heart_rate=90, power=1, anything=3)])
    # current firmware from before consent: tagged, never a consent record
    enrol(client, "bike-1", KEY)
    gateway.push([bike(1, heart_rate=91, power=2, anything=4)])
    assert records(client, "bike-7")[0]["m"] == {"heart_rate": 90, "power": 1, "anything": 3}
    assert records(client, "bike-1")[0]["m"] == {"heart_rate": 91, "power": 2, "anything": 4}
    for device_id in ("bike-1", "bike-7"):
        assert device(client, device_id)["consent"] is None
        assert view(client, device_id)["audit"] == []
    # the account may still narrow such a device: the cloud enforces it from then on
    assert put(client, "usage", "bike-7").json()["tier"] == "usage"
    assert records(client, "bike-7")[0]["m"] == {"power": 1}
    gateway.push([rec("bike-7", 2, heart_rate=90, power=5)])
    assert records(client, "bike-7")[1]["m"] == {"power": 5}


def test_what_a_tier_keeps() -> None:
    assert consent_service.allowed("bike", "usage") == {"cadence", "power", "speed"}
    assert consent_service.allowed("bike", "personal") == {"cadence", "power", "speed",
                                                           "heart_rate"}
    assert consent_service.allowed("bike", "essential") == set()
    # an unknown product: a name every product that names it allows, never an unnamed one
    assert consent_service.allowed(None, "usage") == {
        name for table in tiers.METRIC_TIERS.values() for name, tier in table.items()
        if tier == "usage"}
    assert "heart_rate" in consent_service.allowed("treadmill", "personal")
    assert "anything" not in consent_service.allowed(None, "personal")
    assert consent_service.allowed(None, "essential") == set()


def test_an_unknown_product_keeps_what_every_product_allows(
    client: TestClient, gateway: GatewaySim
) -> None:
    enrol(client, "tread-1", KEY, product="treadmill")
    gateway.push([consent("tread-1", 1, KEY, "usage"),
                  signed("tread-1", 2, KEY, power=5, heart_rate=90, reps=3, anything=1)])
    assert records(client, "tread-1")[1]["m"] == {"power": 5}


def test_the_audit_survives_in_order(client: TestClient, gateway: GatewaySim) -> None:
    at_personal(client, gateway, last=2)
    gateway.push([consent("bike-1", 3, KEY, "usage")])
    gateway.push([consent("bike-1", 4, KEY, "personal")])
    gateway.push([consent("bike-1", 5, KEY, "essential")])
    audit = view(client)["audit"]
    assert [(a["from_tier"], a["to_tier"]) for a in audit] == [
        ("personal", "essential"), ("usage", "personal"), ("personal", "usage"),
        (None, "personal")]
    assert [a["id"] for a in audit] == sorted((a["id"] for a in audit), reverse=True)
    assert json.loads(json.dumps(audit[0]["fields"])) == ["power"]
