from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cloudkit import (
    ADMIN,
    ADMIN_TOKEN,
    T0,
    Clock,
    GatewaySim,
    enrol,
    rec,
    record_key,
    signed,
    signed_state,
    state,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.main import create_app
from cloud.pg import Adapter, PgDatabase
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
    # nothing loads from elsewhere, nothing runs: links and the stylesheet are this cloud's
    assert "<script" not in html.lower()
    assert not re.search(r"\ssrc=", html)
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert "/dashboard.css" in hrefs and "/devices/bike-1" in hrefs and "/gateways/gw-1" in hrefs
    assert all(h.startswith("/") and not h.startswith("//") for h in hrefs)
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_dashboard_stylesheet_is_served_without_a_token(client: TestClient) -> None:
    r = client.get("/dashboard.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert "svg.chart" in r.text


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
    (alerts,) = re.findall(r'<ul class="alerts" id="alerts">(.*?)</ul>', html, re.S)
    assert '<a href="/devices/bike-1">bike-1</a>: 1 item in quarantine' in alerts
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


def _sql_seen(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the app's connections run from now on (SQLite: its trace callback;
    PostgreSQL: the adapter every store statement goes through)."""
    seen: list[str] = []
    db = app.state.db
    if isinstance(db, PgDatabase):
        execute, executemany = Adapter.execute, Adapter.executemany

        def traced_execute(self: Adapter, sql: str, *args: Any) -> Any:
            seen.append(sql)
            return execute(self, sql, *args)

        def traced_executemany(self: Adapter, sql: str, *args: Any) -> Any:
            seen.append(sql)
            return executemany(self, sql, *args)

        monkeypatch.setattr(Adapter, "execute", traced_execute)
        monkeypatch.setattr(Adapter, "executemany", traced_executemany)
        return seen
    db.close()  # the idle pooled connections: every one from now on is a traced one
    connect = db._connect

    def traced() -> sqlite3.Connection:
        conn = connect()
        conn.set_trace_callback(seen.append)
        return conn

    db._connect = traced
    return seen


def test_overview_reads_no_telemetry(
    app: FastAPI, client: TestClient, gateway: GatewaySim, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.push([rec("bike-1", i) for i in range(1, 51)] + [rec("mirror-1", 1, reps=3)])
    seen = _sql_seen(app, monkeypatch)
    html = client.get("/", headers=ADMIN).text
    assert seen, "the trace saw nothing"
    assert not [s for s in seen if re.search(r"\btelemetry\b", s)]
    assert "51 records" in html and "1 batches" in html


def test_overview_shows_online_firmware_drift_and_consent(
    client: TestClient, gateway: GatewaySim, clock: Clock
) -> None:
    gateway.push(
        [rec("bike-1", 1, t=T0), rec("bike-2", 1, t=T0 - 3_600_000)],
        [state("bike-1", fw="0.2.0", impl="micropython"),
         {**state("bike-2", fw="0.1.0", impl="micropython"), "t": T0 - 3_600_000}],
    )
    client.post("/api/v1/devices", json={"id": "bike-2", "product": "bike"}, headers=ADMIN)
    client.put("/api/v1/devices/bike-2/config", json={"settings": {"interval_ms": 700}},
               headers=ADMIN)
    html = client.get("/", headers=ADMIN).text
    assert "2 devices (1 online, 1 offline)" in html
    rows = dict(re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', html, re.S))
    assert '<td class="online">online</td>' in rows["bike-1"]
    assert '<td class="offline">offline</td>' in rows["bike-2"]
    (fw,) = re.findall(r'<table id="firmware">(.*?)</table>', html, re.S)
    assert "<td>0.1.0</td>" in fw and "<td>0.2.0</td>" in fw
    (drift,) = re.findall(r'<table id="drift">(.*?)</table>', html, re.S)
    assert "<td>offline</td>" in drift and "<td>not set</td>" in drift
    (tiers,) = re.findall(r'<table id="consent">(.*?)</table>', html, re.S)
    assert "<td>not reported</td><td class=\"num\">2</td>" in tiers
    assert "1 device offline: <a href=\"/devices/bike-2\">bike-2</a>" in html


def _fill_bike(client: TestClient, gateway: GatewaySim, hours: int = 48) -> None:
    key = record_key()
    enrol(client, "bike-1", key)
    records = [signed("bike-1", i + 1, key, t=T0 - (hours * 60 - i) * 60_000,
                      power=150 + i % 60, cadence=80, speed=25.5)
               for i in range(hours * 60)]
    for start in range(0, len(records), 1000):
        assert gateway.push(records[start:start + 1000]).status_code == 200
    states = [signed_state("bike-1", key, t=T0 - (hours - h) * 3_600_000, heap_low=40_000 - h,
                           buffer_bytes=64 * h, reconnects=h // 6, rssi=-60 - h % 5,
                           why="heartbeat")
              for h in range(hours)]
    assert gateway.push([], states).status_code == 200


def test_device_page_plots_metrics_and_vitals_with_zoom_links(
    client: TestClient, gateway: GatewaySim
) -> None:
    _fill_bike(client, gateway)
    r = client.get("/devices/bike-1", headers=ADMIN)
    assert r.status_code == 200 and "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    (rng,) = re.findall(r'id="range" data-from-ms="(\d+)" data-to-ms="(\d+)"', html)
    assert int(rng[1]) - int(rng[0]) == 86_400_000 and int(rng[1]) == T0 - 60_000 + 1
    figures = dict(re.findall(r'<figure class="metric" data-name="(\w+)">(.*?)</figure>', html, re.S))
    assert list(figures) == ["cadence", "power", "speed", "heart_rate"]
    power = re.findall(r'<polyline class="mean" points="([^"]*)"', figures["power"])
    assert len(power) == 1 and len(power[0].split()) > 200
    assert "power (W)" in figures["power"] and "no data in this range" in figures["heart_rate"]
    vitals = dict(re.findall(r'<figure class="vital" data-name="(\w+)">(.*?)</figure>', html, re.S))
    assert list(vitals) == ["heap_low", "buffer_bytes", "reconnects", "rssi"]
    assert "rssi (dBm)" in vitals["rssi"] and "<polyline" in vitals["heap_low"]
    links = dict((rel, href) for href, rel in
                 re.findall(r'<a href="([^"]*)" data-range="([^"]*)"', html))
    assert set(links) == {"1 h", "24 h", "7 d", "30 d", "earlier", "zoom-in", "zoom-out",
                          "later", "latest"}
    zoomed = client.get(links["zoom-in"].replace("&amp;", "&"), headers=ADMIN).text
    (zr,) = re.findall(r'id="range" data-from-ms="(\d+)" data-to-ms="(\d+)"', zoomed)
    assert int(zr[1]) - int(zr[0]) == 43_200_000
    assert int(zr[0]) + int(zr[1]) == int(rng[0]) + int(rng[1])  # same centre
    assert "<td><code>power</code></td>" in html and "<td>W</td>" in html  # last values, unit


def test_device_page_refuses_a_bad_range_and_unknown_devices(
    client: TestClient, gateway: GatewaySim
) -> None:
    gateway.push([rec("bike-1", 1)])
    assert client.get("/devices/bike-1", params={"from_ms": 10, "to_ms": 5},
                      headers=ADMIN).status_code == 400
    assert client.get("/devices/nobody", headers=ADMIN).status_code == 404
    unsigned = client.get("/devices/bike-1", follow_redirects=False)
    assert unsigned.status_code == 303 and unsigned.headers["location"] == "/login"


def test_device_and_gateway_pages_escape_what_devices_send(
    client: TestClient, gateway: GatewaySim
) -> None:
    gateway.push_raw([], [{**state("bike-1"), "fw": "<i>x</i>"}])
    gateway.push([rec("bike-1", 1)], [state("bike-1", fw="<i>x</i>", reason="<b>r</b>")])
    for path in ("/devices/bike-1", "/gateways/gw-1", "/"):
        html = client.get(path, headers=ADMIN).text
        assert "<i>" not in html and "<b>" not in html, path


def test_gateway_page_shows_its_chain_gaps_and_devices(
    client: TestClient, gateway: GatewaySim
) -> None:
    gateway.push([rec("bike-1", 1), rec("mirror-1", 1, reps=2)])
    r = client.get("/gateways/gw-1", headers=ADMIN)
    assert r.status_code == 200
    html = r.text
    assert 'data-gateway="gw-1"' in html
    (chain,) = re.findall(r'<table id="chain">(.*?)</table>', html, re.S)
    assert "<td>1</td>" in chain and gateway.prev in chain
    assert "No gaps" in html
    (devices,) = re.findall(r'<table id="gateway-devices">(.*?)</table>', html, re.S)
    assert '<a href="/devices/bike-1">bike-1</a>' in devices and "mirror-1" in devices
    assert client.get("/gateways/nobody", headers=ADMIN).status_code == 404
