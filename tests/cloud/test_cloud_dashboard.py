from __future__ import annotations

import re
from pathlib import Path

from cloudkit import ADMIN, ADMIN_TOKEN, GatewaySim, enrol, rec, record_key, signed, state
from fastapi.testclient import TestClient

from cloud.main import create_app
from cloud.settings import Settings


def test_dashboard_lists_devices_and_their_values(client: TestClient, gateway: GatewaySim) -> None:
    client.post("/api/v1/devices", json={"id": "bike-1", "product": "bike"}, headers=ADMIN)
    client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 700}}, headers=ADMIN)
    gateway.push(
        [rec("bike-1", 1, power=212.5, cadence=81), rec("mirror-1", 1, reps=12, active=True)],
        [state("bike-1", fw="0.1.0", impl="micropython", config_version=1,
               config_status="rejected", reason="<b>nope</b>")],
    )
    r = client.get("/", headers=ADMIN)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<meta http-equiv="refresh" content="5">' in html
    rows = re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', html, re.S)
    assert [device for device, _ in rows] == ["bike-1", "mirror-1"]
    bike = rows[0][1]
    for text in ("bike", "gw-1", "power=212.5", "cadence=81", "desired v1", "reported v1 rejected",
                 "0.1.0 micropython"):
        assert text in bike, text
    assert "&lt;b&gt;nope&lt;/b&gt;" in bike and "<b>nope</b>" not in html
    assert "reps=12" in rows[1][1] and "active=true" in rows[1][1]
    assert 'data-gateway="gw-1"' in html
    # nothing loads from elsewhere, nothing runs
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=", html)
    assert "default-src 'none'" in r.headers["content-security-policy"]


def test_dashboard_empty_fleet(client: TestClient) -> None:
    r = client.get("/", headers=ADMIN)
    assert r.status_code == 200 and "No devices yet." in r.text
    assert "Nothing in quarantine." in r.text


def test_dashboard_needs_a_session_or_a_token_outside_dev(client: TestClient) -> None:
    # no session: to the login page, never a token in a URL
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = client.get("/", params={"token": ADMIN_TOKEN}, follow_redirects=False)
    assert r.status_code == 303, "a token in the URL must not open the dashboard"
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/", headers=ADMIN).status_code == 200


def test_dashboard_is_open_in_dev_mode(tmp_path: Path) -> None:
    with TestClient(create_app(Settings.load(home=tmp_path, dev=True, env={}))) as client:
        r = client.get("/")
        assert r.status_code == 200 and "dev mode" in r.text
        # dev mode opens the dashboard only: the API still wants the token
        assert client.get("/api/v1/devices").status_code == 401


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_dashboard_shows_quarantined_counts(client: TestClient, gateway: GatewaySim) -> None:
    bad = {**rec("bike-1", 2), "t": 2**63}
    assert gateway.push_raw([rec("bike-1", 1), bad, rec("mirror-1", 1)]).status_code == 200
    html = client.get("/", headers=ADMIN).text
    rows = dict(re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', html, re.S))
    assert '<td class="num quarantined">1</td>' in rows["bike-1"]
    assert '<td class="num">0</td>' in rows["mirror-1"]
    assert "1 quarantined" in html
    (table,) = re.findall(r'<table id="quarantine">(.*?)</table>', html, re.S)
    assert "bike-1" in table and "t must be an int in 0..2**53-1" in table
    assert "gw-1 batch 1" in table


def test_dashboard_quarantine_is_escaped(client: TestClient, gateway: GatewaySim) -> None:
    # a state's reason names its unknown field, which the sender chose
    gateway.push_raw([], [{**state("bike-1"), "<script>": 1}])
    html = client.get("/", headers=ADMIN).text
    assert "unknown state field &lt;script&gt;" in html
    assert "<script" not in html.lower()


def test_dashboard_shows_the_new_reasons_and_conflicts(client: TestClient, gateway: GatewaySim) -> None:
    key = record_key()
    enrol(client, "bike-1", key)
    forged = signed("bike-1", 2, key).replace('"power":102', '"power":1')
    gateway.push([signed("bike-1", 1, key), forged])
    gateway.push([rec("bike-1", 3)])  # an older gateway's version 1 batch
    gateway.push([signed("bike-1", 1, key, power=5)])  # a conflict
    gateway.push([signed("mirror-1", 1, key)])  # no record key registered for mirror-1
    html = client.get("/", headers=ADMIN).text
    rows = dict(re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', html, re.S))
    assert '<td class="num quarantined">3<br><small>1 conflict</small></td>' in rows["bike-1"]
    assert '<td class="num quarantined">1</td>' in rows["mirror-1"]
    (table,) = re.findall(r'<table id="quarantine">(.*?)</table>', html, re.S)
    for reason in ("bad tag: not what device bike-1 signed",
                   "unsigned (version 1) record from device bike-1",
                   "conflict: device bike-1 incarnation 1234567 seq 1",
                   "no record key registered for device mirror-1"):
        assert reason in table, reason


def test_dashboard_shows_consent(client: TestClient, gateway: GatewaySim) -> None:
    from cloudkit import consent

    key = record_key()
    enrol(client, "bike-1", key)
    gateway.push([consent("bike-1", 1, key, "personal")])
    gateway.push([rec("bike-7", 1)])
    html = client.get("/", headers=ADMIN).text
    rows = dict(re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', html, re.S))
    assert '<td class="consent">personal</td>' in rows["bike-1"]
    assert "not reported" in rows["bike-7"]
    client.put("/api/v1/devices/bike-1/consent", json={"tier": "usage"}, headers=ADMIN)
    html = client.get("/", headers=ADMIN).text
    rows = dict(re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', html, re.S))
    assert "usage<br><small>capped in the cloud (config v1)</small>" in rows["bike-1"]
