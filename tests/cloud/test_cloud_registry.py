"""The registry: enrolment fields, customers, cohorts, decommission and revoke, and the
customer's own endpoints (scoped, export, cancel)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from cloudkit import ADMIN, T0, GatewaySim, api_token, b64, bearer, record_key, signed
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.access import Principal, Role
from cloud.errors import InvalidRequest, NotFound
from cloud.services import cohorts, customers

FP = "ab" * 32


def customer(client: TestClient, cid: str = "acme", name: str = "Acme") -> None:
    r = client.post("/api/v1/customers", json={"id": cid, "name": name}, headers=ADMIN)
    assert r.status_code in (200, 201), r.text


def enrol(client: TestClient, device: str, **fields: Any) -> Any:
    body = {"id": device, "product": "bike", **fields}
    return client.post("/api/v1/devices", json=body, headers=ADMIN)


# -- enrolment and customers ------------------------------------------------------------------

def test_enrolment_records_what_the_factory_knows(client: TestClient) -> None:
    customer(client)
    r = enrol(client, "bike-1", customer="acme", hw_rev="r2", cert_fingerprint=FP,
              cert_serial="1f", record_key=b64(record_key()))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["customer"], body["hw_rev"], body["cert_fingerprint"], body["enrolled_ms"],
            body["status"]) == ("acme", "r2", FP, T0, "active")
    assert body["record_key_registered"] is True and "record_key" not in body
    # enrolling again without the fields keeps them
    again = enrol(client, "bike-1").json()
    assert (again["customer"], again["hw_rev"]) == ("acme", "r2")
    assert enrol(client, "bike-2", customer="nobody").status_code == 422
    assert client.get("/api/v1/devices/bike-2", headers=ADMIN).status_code == 404
    assert enrol(client, "bike-3", cert_fingerprint="XY").status_code == 422


def test_customers(client: TestClient) -> None:
    r = client.post("/api/v1/customers", json={"id": "acme", "name": "Acme"}, headers=ADMIN)
    assert r.status_code == 201
    assert client.post("/api/v1/customers", json={"id": "acme", "name": "Acme"},
                       headers=ADMIN).status_code == 200
    assert client.post("/api/v1/customers", json={"id": "acme", "name": "Other"},
                       headers=ADMIN).status_code == 409
    enrol(client, "bike-1")
    r = client.put("/api/v1/devices/bike-1/customer", json={"customer": "acme"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["customer"] == "acme"
    assert client.put("/api/v1/devices/bike-1/customer", json={"customer": "zz"},
                      headers=ADMIN).status_code == 422
    got = client.get("/api/v1/customers/acme", headers=ADMIN).json()
    assert got == {"id": "acme", "name": "Acme", "created_ms": T0, "cancelled_ms": None,
                   "devices": ["bike-1"]}
    assert [c["id"] for c in client.get("/api/v1/customers", headers=ADMIN).json()] == ["acme"]
    assert client.get("/api/v1/customers/nope", headers=ADMIN).status_code == 404


# -- decommission and revoke ------------------------------------------------------------------

def test_a_revoked_device_s_data_is_quarantined_never_stored(
    client: TestClient, gateway: GatewaySim
) -> None:
    k1, k2 = record_key(1), record_key(2)
    enrol(client, "bike-1", record_key=b64(k1), cert_serial="1f", cert_fingerprint=FP)
    enrol(client, "bike-2", record_key=b64(k2))
    assert gateway.push([signed("bike-1", 1, k1)]).json()["stored"] == 1
    r = client.post("/api/v1/devices/bike-1/revoke", json={"reason": "stolen"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert r.json()["status_reason"] == "stolen"
    r = gateway.push([signed("bike-1", 2, k1), signed("bike-1", 3, k1), signed("bike-2", 1, k2)])
    assert r.status_code == 200
    assert (r.json()["stored"], r.json()["quarantined"]) == (1, 2)
    held = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert [h["reason"] for h in held] == ["device revoked"] * 2
    assert client.get("/api/v1/devices/bike-1", headers=ADMIN).json()["records"] == 1
    revs = client.get("/api/v1/revocations", headers=ADMIN).json()
    assert [(x["device"], x["cert_serial"], x["reason"]) for x in revs] == [
        ("bike-1", "1f", "stolen")]
    # final: no way back through the factory or a decommission
    assert enrol(client, "bike-1").status_code == 409
    assert client.post("/api/v1/devices/bike-1/decommission", json={"reason": "x"},
                       headers=ADMIN).status_code == 409
    assert gateway.token and client.get(
        "/api/v1/revocations", headers={"Authorization": f"Bearer {gateway.token}"}
    ).status_code == 200


def test_a_decommissioned_device_is_refused_too(client: TestClient, gateway: GatewaySim) -> None:
    enrol(client, "bike-1")
    r = client.post("/api/v1/devices/bike-1/decommission", json={"reason": "returned"},
                    headers=ADMIN)
    assert r.json()["status"] == "decommissioned"
    from cloudkit import rec
    assert gateway.push([rec("bike-1", 1)]).json()["quarantined"] == 1
    held = client.get("/api/v1/devices/bike-1/quarantine", headers=ADMIN).json()
    assert held[0]["reason"] == "device decommissioned"
    assert client.post("/api/v1/devices/bike-1/revoke", json={"reason": ""},
                       headers=ADMIN).status_code == 422  # a reason is required
    assert client.post("/api/v1/devices/nope/revoke", json={"reason": "x"},
                       headers=ADMIN).status_code == 404


# -- cohorts ----------------------------------------------------------------------------------

def fleet(client: TestClient) -> None:
    customer(client)
    enrol(client, "bike-1", hw_rev="r2", customer="acme")
    enrol(client, "bike-2", hw_rev="r3")
    enrol(client, "bike-3", hw_rev="r1")
    client.post("/api/v1/devices", json={"id": "mirror-1", "product": "mirror", "hw_rev": "r2"},
                headers=ADMIN)


def test_cohorts_by_rule_and_by_list(client: TestClient) -> None:
    fleet(client)
    r = client.put("/api/v1/cohorts/new-bikes",
                   json={"rule": {"product": "bike", "hw_rev": ["r2", "r3"]}}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["rule"] == {"product": ["bike"], "hw_rev": ["r2", "r3"]}
    assert client.get("/api/v1/cohorts/new-bikes/devices", headers=ADMIN).json()["devices"] == [
        "bike-1", "bike-2"]
    r = client.post("/api/v1/cohorts", json={"name": "pilot", "devices": ["mirror-1", "bike-3"],
                                             "priority": 5}, headers=ADMIN)
    assert r.status_code == 201
    assert client.post("/api/v1/cohorts", json={"name": "pilot", "devices": ["bike-1"]},
                       headers=ADMIN).status_code == 409
    assert client.get("/api/v1/cohorts/pilot/devices", headers=ADMIN).json()["devices"] == [
        "bike-3", "mirror-1"]
    acme = client.put("/api/v1/cohorts/acme", json={"rule": {"customer": "acme"}}, headers=ADMIN)
    assert acme.status_code == 201
    assert client.get("/api/v1/cohorts/acme/devices", headers=ADMIN).json()["devices"] == [
        "bike-1"]
    assert [c["name"] for c in client.get("/api/v1/cohorts", headers=ADMIN).json()] == [
        "acme", "new-bikes", "pilot"]
    # a revoked device is in no cohort
    client.post("/api/v1/devices/bike-2/revoke", json={"reason": "cloned"}, headers=ADMIN)
    assert client.get("/api/v1/cohorts/new-bikes/devices", headers=ADMIN).json()["devices"] == [
        "bike-1"]
    assert client.delete("/api/v1/cohorts/pilot", headers=ADMIN).status_code == 204
    assert client.get("/api/v1/cohorts/pilot", headers=ADMIN).status_code == 404
    assert client.delete("/api/v1/cohorts/pilot", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("body, code", [
    ({"rule": {"colour": "red"}}, 422),  # unknown key
    ({"rule": {"product": 3}}, 422),
    ({"rule": {}}, 400),
    ({}, 400),
    ({"rule": {"product": "bike"}, "devices": ["bike-1"]}, 400),
    ({"devices": ["ghost"]}, 422),  # not registered
    ({"devices": ["bad/id"]}, 422),
    ({"rule": {"product": "bike"}, "where": "1=1"}, 422),
])
def test_bad_cohorts_are_refused(client: TestClient, body: dict[str, Any], code: int) -> None:
    fleet(client)
    r = client.put("/api/v1/cohorts/c1", json=body, headers=ADMIN)
    assert r.status_code == code, r.text
    assert r.json()["detail"]
    assert client.get("/api/v1/cohorts/c1", headers=ADMIN).status_code == 404


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.dictionaries(st.text(max_size=10), st.one_of(
    st.text(max_size=70), st.lists(st.text(max_size=5), max_size=3), st.integers(), st.none()),
    max_size=3))
def test_check_rule_accepts_only_what_it_can_store(rule: dict[str, Any]) -> None:
    try:
        out = cohorts.check_rule(rule)
    except InvalidRequest as exc:
        assert str(exc)
        return
    assert set(out) <= set(cohorts.RULE_KEYS) and out
    assert all(v and all(isinstance(x, str) and x for x in v) for v in out.values())


def test_members_is_a_service_function(app: FastAPI, client: TestClient) -> None:
    fleet(client)
    client.put("/api/v1/cohorts/r2", json={"rule": {"hw_rev": "r2"}}, headers=ADMIN)
    with app.state.db.connection() as store:
        assert cohorts.members(store, "r2") == ["bike-1", "mirror-1"]
        with pytest.raises(NotFound):
            cohorts.members(store, "nope")


# -- the customer's own endpoints -------------------------------------------------------------

def test_scoping_in_the_service(app: FastAPI, client: TestClient) -> None:
    fleet(client)
    with app.state.db.connection() as store:
        mine = Principal(role=Role.CUSTOMER, name="acme app", customer="acme")
        assert customers.own_device(store, mine.customer, "bike-1").id == "bike-1"
        for other in ("bike-2", "ghost"):
            with pytest.raises(NotFound) as exc:
                customers.own_device(store, mine.customer, other)
            assert str(exc.value) == f"device {other} not found"  # the same for both
        assert [d.id for d in customers.devices(store, "acme")] == ["bike-1"]
        assert customers.own_device(store, None, "bike-2").id == "bike-2"  # staff


@pytest.fixture
def customer_token(app: FastAPI) -> Callable[[str], dict[str, str]]:
    """Mints a real customer token (cloud.services.tokens) bound to a customer id."""

    def mint(customer_id: str) -> dict[str, str]:
        return bearer(api_token(app, "customer", f"{customer_id} app", customer=customer_id))

    return mint


def test_a_customer_sees_only_their_products(
    client: TestClient, customer_token: Callable[[str], dict[str, str]]
) -> None:
    fleet(client)
    customer(client, "zeta", "Zeta")
    acme = customer_token("acme")
    assert [d["id"] for d in client.get("/api/v1/me/devices", headers=acme).json()] == ["bike-1"]
    assert client.get("/api/v1/me/devices", headers=customer_token("zeta")).json() == []
    for other in ("bike-2", "ghost"):
        r = client.get(f"/api/v1/me/devices/{other}/export", headers=acme)
        assert r.status_code == 404 and r.json() == {"detail": f"device {other} not found"}
        r = client.put(f"/api/v1/devices/{other}/consent", json={"tier": "usage"}, headers=acme)
        assert r.status_code == 404
    # staff endpoints stay closed to customers
    assert client.get("/api/v1/devices", headers=acme).status_code == 403
    assert client.get("/api/v1/cohorts", headers=acme).status_code == 403


def test_export_pages_in_json_and_csv(
    client: TestClient, gateway: GatewaySim, customer_token: Callable[[str], dict[str, str]]
) -> None:
    customer(client)
    key = record_key()
    enrol(client, "bike-1", customer="acme", record_key=b64(key))
    gateway.push([signed("bike-1", s, key, power=100 + s, cadence=80) for s in range(1, 6)])
    acme = customer_token("acme")
    r = client.get("/api/v1/me/devices/bike-1/export?limit=3", headers=acme)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert [x["seq"] for x in body["records"]] == [1, 2, 3]
    assert body["records"][0]["m"] == {"power": 101, "cadence": 80}
    nxt = body["next"]
    assert 'rel="next"' in r.headers["link"]
    r = client.get("/api/v1/me/devices/bike-1/export", headers=acme,
                   params={"limit": 3, **nxt})
    assert [x["seq"] for x in r.json()["records"]] == [4, 5] and r.json()["next"] is None
    r = client.get("/api/v1/me/devices/bike-1/export?format=csv", headers=acme)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["incarnation", "seq", "t", "cadence", "power"]
    assert [row[1] for row in rows[1:]] == ["1", "2", "3", "4", "5"]
    assert client.get("/api/v1/me/devices/bike-1/export?format=xml",
                      headers=acme).status_code == 422


def test_cancel_narrows_every_product_and_stops_proposals(
    client: TestClient, gateway: GatewaySim, customer_token: Callable[[str], dict[str, str]]
) -> None:
    customer(client)
    key = record_key()
    enrol(client, "bike-1", customer="acme", record_key=b64(key))
    enrol(client, "bike-2")
    gateway.push([signed("bike-1", 1, key, power=100, hr=90)])
    acme = customer_token("acme")
    r = client.post("/api/v1/me/cancel", headers=acme)
    assert r.status_code == 200, r.text
    assert r.json() == {"customer": "acme", "cancelled_ms": T0, "devices": ["bike-1"]}
    consent = client.get("/api/v1/devices/bike-1/consent", headers=ADMIN).json()
    assert consent["tier"] == "essential" and consent["cap"] == "essential"
    assert consent["audit"][0]["requested_by"] == "customer cancelled"
    stored = client.get("/api/v1/devices/bike-1/telemetry", headers=ADMIN).json()["records"]
    assert stored[0]["m"] == {}  # personal and usage data deleted
    desired = client.get("/api/v1/devices/bike-1/config", headers=ADMIN).json()["desired"]
    assert desired["version"] == 1
    # a profile change reaches bike-2, not the cancelled customer's bike-1
    r = client.put("/api/v1/profiles/product/bike", json={"settings": {"interval_ms": 700}},
                   headers=ADMIN)
    assert r.json()["configs"] == {"bike-2": 1}
    assert client.get("/api/v1/devices/bike-1/config", headers=ADMIN).json()["desired"][
        "version"] == 1
    assert client.get("/api/v1/customers/acme", headers=ADMIN).json()["cancelled_ms"] == T0
    # idempotent; and a staff token has no account of its own to cancel
    assert client.post("/api/v1/me/cancel", headers=acme).status_code == 200
    assert client.post("/api/v1/me/cancel", headers=ADMIN).status_code == 403
