"""The health API and page over records that came through the ingest path: who may read what,
the churn-risk list as JSON and CSV, consent said out loud, and the dashboard page's plot."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

from cloudkit import ADMIN, T0, GatewaySim, api_token, bearer, rec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.store import RegistryRow

DAY = 86_400_000
MINUTE = 60_000


def ride(device: str, first_seq: int, start: int, minutes: int = 30) -> list[dict]:
    return [rec(device, first_seq + i, start + i * MINUTE, power=150 + i, cadence=80,
                heart_rate=130) for i in range(minutes)]


def setup_fleet(app: FastAPI, gateway: GatewaySim) -> None:
    """bike-1 rides every other day (acme's); bike-2 (=evil's) rode a month ago and stopped."""
    records = []
    seq = 1
    for day in range(20, 0, -2):
        records += ride("bike-1", seq, T0 - day * DAY)
        seq += 30
    records += ride("bike-2", 1, T0 - 40 * DAY) + ride("bike-2", 31, T0 - 38 * DAY)
    r = gateway.push(records)
    assert r.status_code == 200, r.text
    with app.state.db.connection() as store, store.transaction():
        from cloud.store import CustomerRow

        for c in ("acme", "=evil"):
            store.insert_customer(CustomerRow(id=c, name=c, created_ms=T0))
        for device, customer in (("bike-1", "acme"), ("bike-2", "=evil")):
            store.set_registry(RegistryRow(device=device, customer=customer))
            row = store.get_device(device)
            assert row is not None
            store.save_device(replace(row, product="bike"))  # as enrolment would say


def test_roles_and_the_customers_own_view(app: FastAPI, client: TestClient,
                                          gateway: GatewaySim) -> None:
    setup_fleet(app, gateway)
    analyst = bearer(api_token(app, "analyst"))
    tech = bearer(api_token(app, "technician"))
    acme = bearer(api_token(app, "customer", customer="acme"))
    r = client.get("/api/v1/devices/bike-1/kpis", headers=analyst)
    assert r.status_code == 200, r.text
    kpis = {k["name"]: k for k in r.json()["kpis"]}
    assert kpis["rides_per_week"]["value"] == 3.5  # 10 rides over 20 days: the last 14 hold 7
    assert kpis["active_minutes_per_week"]["value"] == 105.0
    assert r.json()["weekly"][-3:] == [3, 4, 3]
    assert client.get("/api/v1/health/churn", headers=tech).status_code == 403
    assert client.get("/api/v1/health/devices", headers=acme).status_code == 403
    # a customer reads their own product, and nobody else's (404: ids do not leak)
    assert client.get("/api/v1/devices/bike-1/kpis", headers=acme).status_code == 200
    assert client.get("/api/v1/devices/bike-2/kpis", headers=acme).status_code == 404
    mine = client.get("/api/v1/me/health", headers=acme).json()
    assert [d["device"] for d in mine] == ["bike-1"]
    assert {c["name"] for c in mine[0]["components"]} == {
        "recency", "frequency", "outcome", "device", "consent"}
    assert client.get("/api/v1/devices/bike-1/kpis?at_ms=0", headers=analyst).status_code == 422


def test_churn_list_json_and_csv(app: FastAPI, client: TestClient, gateway: GatewaySim) -> None:
    setup_fleet(app, gateway)
    analyst = bearer(api_token(app, "analyst"))
    body = client.get("/api/v1/health/churn", headers=analyst).json()
    assert body["at_ms"] == T0
    assert [(r["device"], r["kind"]) for r in body["risks"]] == [("bike-2", "lapsed")]
    assert body["risks"][0]["reason"].startswith("no rides for 38 days")
    r = client.get("/api/v1/health/churn?format=csv", headers=analyst)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["device", "customer", "product", "kind", "score", "since_ms", "reason"]
    assert rows[1][:4] == ["bike-2", "'=evil", "bike", "lapsed"]  # not a formula
    # as of a day before bike-2 stopped, nobody is at risk
    early = client.get(f"/api/v1/health/churn?at_ms={T0 - 37 * DAY}", headers=analyst).json()
    assert early["risks"] == []
    customers = client.get("/api/v1/health/customers", headers=analyst).json()["customers"]
    scores = {c["customer"]: c["score"] for c in customers}
    assert scores["acme"] > scores["=evil"]


def test_consent_is_said_in_the_answer(app: FastAPI, client: TestClient,
                                       gateway: GatewaySim) -> None:
    setup_fleet(app, gateway)
    with app.state.db.connection() as store, store.transaction():
        row = store.get_device("bike-1")
        assert row is not None
        store.save_device(replace(row, consent_tier="usage"))
    kpis = {k["name"]: k for k in client.get("/api/v1/devices/bike-1/kpis",
                                             headers=ADMIN).json()["kpis"]}
    hr = kpis["heart_rate_mean_bpm"]
    assert (hr["status"], hr["value"], hr["tier"]) == ("not computed", None, "personal")
    assert hr["reason"] == "needs consent tier personal; the device allows usage"
    assert kpis["power_mean_w"]["status"] == "ok"


def test_the_health_page_plots_and_lists(app: FastAPI, client: TestClient,
                                         gateway: GatewaySim) -> None:
    setup_fleet(app, gateway)
    r = client.get("/health", headers=ADMIN)
    assert r.status_code == 200, r.text
    html = r.text
    assert 'data-name="bike-weekly"' in html and "<svg" in html
    assert 'id="churn"' in html and "no rides for 38 days" in html
    assert "&#x27;=evil" not in html and "=evil" in html  # escaped as text, once
    assert client.get("/health", headers=bearer(api_token(app, "technician"))).status_code == 403
