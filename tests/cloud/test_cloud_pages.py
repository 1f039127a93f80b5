"""The registry's pages (customers, cohorts, audit log), the navigation bar with the signed-in
user and a sign-out form, and the cohort series API: what an operator reads on them, every
value escaped, filters and paging as plain links, each page's roles."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloudkit import ADMIN, T0, Clock, GatewaySim, api_token, b64, bearer, record_key, signed
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud import fleet_pages
from cloud.store import AuditRow

MINUTE = 60_000


def _fill(client: TestClient, gateway: GatewaySim) -> None:
    """acme owns bike-1 and bike-2 (an hour of power each, bike-2 twice bike-1's); bike-3 is
    nobody's; a cohort of r2 bikes holds bike-1 and bike-3."""
    assert client.post("/api/v1/customers", json={"id": "acme", "name": "Acme <Gyms>"},
                       headers=ADMIN).status_code == 201
    keys = {n: record_key(n) for n in (1, 2, 3)}
    for n in (1, 2, 3):
        body: dict[str, Any] = {"id": f"bike-{n}", "product": "bike", "record_key": b64(keys[n]),
                                "hw_rev": "r2" if n != 2 else "r1"}
        if n != 3:
            body["customer"] = "acme"
        assert client.post("/api/v1/devices", json=body, headers=ADMIN).status_code == 201
    records = [signed(f"bike-{n}", i + 1, keys[n], t=T0 - (60 - i) * MINUTE, power=100 * n + i)
               for n in (1, 2, 3) for i in range(60)]
    assert gateway.push(records).status_code == 200
    assert client.put("/api/v1/cohorts/r2", json={"rule": {"hw_rev": "r2"}},
                      headers=ADMIN).status_code == 201


def _points(html: str) -> int:
    return sum(len(p.split()) for p in re.findall(r'<polyline class="mean" points="([^"]+)"',
                                                  html))


def test_customer_pages_show_products_state_and_a_plot(
    client: TestClient, gateway: GatewaySim
) -> None:
    _fill(client, gateway)
    listing = client.get("/customers", headers=ADMIN)
    assert listing.status_code == 200
    assert 'href="/customers/acme"' in listing.text and "Acme &lt;Gyms&gt;" in listing.text
    assert "<Gyms>" not in listing.text
    page = client.get("/customers/acme", headers=ADMIN).text
    rows = dict(re.findall(r'<tr><td><a href="/devices/([^"]+)">.*?</td>(.*?)</tr>',
                           re.findall(r'<table id="products">(.*?)</table>', page, re.S)[0],
                           re.S))
    assert set(rows) == {"bike-1", "bike-2"}  # bike-3 is nobody's
    assert "online" in rows["bike-1"] and "not set" in rows["bike-1"]  # drift: nothing desired
    assert "active" in rows["bike-1"]
    assert 'data-cancelled="false"' in page
    assert re.search(r'<figure class="group" data-name="power">', page)
    assert _points(page) >= 10  # the default day: an hour of minutes in ~5-minute buckets
    hour = client.get(f"/customers/acme?metric=power&from_ms={T0 - 3_600_000}&to_ms={T0}",
                      headers=ADMIN).text
    assert _points(hour) >= 50  # a bucket a minute or finer, both bikes merged
    assert 'data-metric="power" class="current"' in page
    # the plot merges both products: its value axis reaches bike-2's ~260
    labels = [float(v) for v in re.findall(r'class="value-label"[^>]*>([-\d.]+)<', page)]
    assert max(labels) >= 250 and min(labels) <= 110
    # another metric and another range are plain links
    cadence = client.get("/customers/acme?metric=cadence", headers=ADMIN).text
    assert "no data in this range" in cadence
    assert client.get("/customers/nobody", headers=ADMIN).status_code == 404
    assert client.get("/customers/acme?metric=BAD", headers=ADMIN).status_code == 422


def test_a_cancelled_customer_says_so(client: TestClient, gateway: GatewaySim,
                                      app: FastAPI) -> None:
    _fill(client, gateway)
    owner = api_token(app, "customer", "acme-owner", customer="acme")
    assert client.post("/api/v1/me/cancel", headers=bearer(owner)).status_code == 200
    page = client.get("/customers/acme", headers=ADMIN).text
    assert 'data-cancelled="true"' in page and "cancelled" in page
    assert page.count("essential") >= 2  # both products dropped to essential
    assert "cancelled" in client.get("/customers", headers=ADMIN).text


def test_cohort_pages_show_rule_members_and_a_plot(
    client: TestClient, gateway: GatewaySim
) -> None:
    _fill(client, gateway)
    listing = client.get("/cohorts", headers=ADMIN).text
    assert 'href="/cohorts/r2"' in listing and "hw_rev" in listing
    page = client.get("/cohorts/r2", headers=ADMIN).text
    members = re.findall(r'<table id="members">(.*?)</table>', page, re.S)[0]
    assert re.findall(r'href="/devices/([^"]+)"', members) == ["bike-1", "bike-3"]
    assert "rule <code>" in page and unescape("{&quot;hw_rev&quot;: [&quot;r2&quot;]}") in \
        unescape(page)
    assert _points(page) >= 10
    assert client.get("/cohorts/none", headers=ADMIN).status_code == 404


def test_cohort_series_api_merges_the_members(client: TestClient, gateway: GatewaySim,
                                              app: FastAPI) -> None:
    _fill(client, gateway)
    params = {"metric": "power", "from_ms": T0 - 3_600_000, "to_ms": T0, "points": 6}
    r = client.get("/api/v1/cohorts/r2/series", params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["cohort"], body["devices"], body["unit"]) == ("r2", 2, "W")
    assert body["count"] == 120 and len(body["buckets"]) == 6
    first = body["buckets"][0]
    assert (first["min"], first["max"]) == (100, 300 + 9)  # bike-1's first, bike-3's tenth
    analyst = api_token(app, "analyst")
    assert client.get("/api/v1/cohorts/r2/series", params=params,
                      headers=bearer(analyst)).status_code == 200
    technician = api_token(app, "technician")
    assert client.get("/api/v1/cohorts/r2/series", params=params,
                      headers=bearer(technician)).status_code == 403
    bad = {**params, "from_ms": T0, "to_ms": T0 - 1}
    assert client.get("/api/v1/cohorts/r2/series", params=bad, headers=ADMIN).status_code == 400
    assert client.get("/api/v1/cohorts/nope/series", params=params,
                      headers=ADMIN).status_code == 404


def test_audit_page_filters_and_pages_with_plain_links(
    client: TestClient, app: FastAPI, clock: Clock
) -> None:
    ops = api_token(app, "ops", "alice <ops>")
    for n in range(60):
        client.post("/api/v1/customers", json={"id": f"c{n}", "name": f"C {n}"},
                    headers=bearer(ops))
    client.put("/api/v1/devices/nope/config", json={"settings": {}}, headers=bearer(ops))
    page = client.get("/audit", headers=ADMIN).text
    rows = re.findall(r"<tr><td><span class=\"num\">(\d+)</span>", page)
    assert len(rows) == 50 and rows == sorted(rows, key=int, reverse=True)  # newest first
    assert "refused" in page and "alice &lt;ops&gt;" in page and "alice <ops>" not in page
    # filter links are plain query links
    assert 'href="/audit?outcome=refused"' in page
    assert 'href="/audit?action=customer.create"' in page
    refused = client.get("/audit?outcome=refused", headers=ADMIN).text
    assert len(re.findall(r'<tr><td><span class="num">', refused)) == 1
    assert "404" in refused and "clear" in refused
    # paging: an "older" link carries before= and the filters
    older = re.findall(r'<a id="older" href="([^"]+)"', page)
    assert older and "before=" in older[0]
    second = client.get(unescape(older[0]), headers=ADMIN).text
    ids = re.findall(r"<tr><td><span class=\"num\">(\d+)</span>", second)
    assert ids and max(map(int, ids)) < min(map(int, rows))
    by_action = client.get("/audit?action=customer.create", headers=ADMIN).text
    link = re.findall(r'<a id="older" href="([^"]+)"', by_action)[0]
    assert "action=customer.create" in unescape(link)
    # ops and admin only; other staff are refused
    assert client.get("/audit", headers=bearer(ops)).status_code == 200
    for role in ("analyst", "technician", "factory"):
        assert client.get("/audit", headers=bearer(api_token(app, role))).status_code == 403
    assert client.get("/customers", headers=bearer(api_token(app, "analyst"))).status_code == 200
    assert client.get("/customers", headers=bearer(api_token(app, "factory"))).status_code == 403


def test_every_page_has_the_navigation_and_a_sign_out_form(
    client: TestClient, gateway: GatewaySim, app: FastAPI
) -> None:
    _fill(client, gateway)
    token = api_token(app, "ops", "carol")
    login = client.get("/login")
    (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', login.text)
    r = client.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    for url in ("/", "/devices/bike-1", "/gateways/gw-1", "/customers", "/customers/acme",
                "/cohorts", "/cohorts/r2", "/audit"):
        page = client.get(url)
        assert page.status_code == 200, url
        nav = re.findall(r'<nav class="top" id="nav">(.*?)</nav>', page.text, re.S)
        assert nav, url
        for href in ("/", "/customers", "/cohorts", "/audit"):
            assert f'href="{href}"' in nav[0], (url, href)
        assert "carol" in nav[0] and "(ops)" in nav[0]
        (value,) = re.findall(
            r'<form method="post" action="/logout"[^>]*><input type="hidden" name="csrf"'
            r' value="([^"]+)">', nav[0])
        assert value != csrf and token not in page.text
        assert "<script" not in page.text
    # the form's value signs out; afterwards a page sends the browser to /login
    r = client.post("/logout", data={"csrf": value}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = client.get("/customers", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


@settings(max_examples=200, deadline=None)
@given(actor=st.text(min_size=1, max_size=40), action=st.text(min_size=1, max_size=40),
       target=st.text(min_size=1, max_size=40), reason=st.text(max_size=40))
def test_audit_page_escapes_any_value_and_its_links_filter_by_it(
    actor: str, action: str, target: str, reason: str
) -> None:
    row = AuditRow(id=7, at_ms=T0, actor=actor, role="ops", token_id=None, action=action,
                   target=target, before='{"x":"<b>"}', after=None, outcome="refused",
                   reason=reason)
    html = fleet_pages.audit_page([row], {"actor": None, "action": None, "target": None,
                                          "outcome": None}, 50)
    assert "<b>" not in html and "<script" not in html.lower()
    by_key = {key: href for href, key in
              re.findall(r'<a href="([^"]+)" data-filter="([^"]+)">', html)}
    for key, value in (("actor", actor), ("action", action), ("target", target),
                       ("outcome", "refused")):
        query = parse_qs(urlsplit(unescape(by_key[key])).query, keep_blank_values=True)
        assert query == {key: [value]}, (key, value, query)
