"""The rollout pages of the dashboard (server-rendered HTML): the list and a rollout's page
with a stacked bar per wave, its devices' words and reasons, and who was left out; ops and
technicians only."""

from __future__ import annotations

import re
from pathlib import Path

from cloudkit import ADMIN, GatewaySim, api_token, bearer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from updatekit import Fleet, full, offer_id, upload, write_release_pub


def test_rollout_pages_show_waves_words_and_reasons(
    client: TestClient, app: FastAPI, gateway: GatewaySim, home: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    write_release_pub(home, key)
    data = full(key)
    assert upload(client, data).status_code == 201
    fleet = Fleet(client, gateway, ["bike-1", "bike-2", "bike-3"])
    fleet.push(states=[fleet.state("bike-3", fw="0.2.0")])
    r = client.post("/api/v1/rollouts", json={
        "bundle": "bike-0.2.0", "devices": ["bike-1", "bike-2", "bike-3"], "waves": [50, 100],
        "failure_threshold": 1}, headers=ADMIN)
    assert r.status_code == 201, r.text
    first = [d["device"] for d in r.json()["devices"] if d["wave"] == 1][0]
    client.get("/api/v1/gateway/updates", headers=bearer(gateway.token))
    fleet.say(first, "failure", offer_id(data), update_reason="no space <for> slot b")

    technician = bearer(api_token(app, "technician"))
    listing = client.get("/rollouts", headers=technician)
    assert listing.status_code == 200
    assert 'href="/rollouts/r-1"' in listing.text and "1 pending, 1 failure" in listing.text
    page = client.get("/rollouts/r-1", headers=technician)
    assert page.status_code == 200
    html = page.text
    assert 'data-rollout="r-1" data-state="running"' in html
    assert 'href="/rollouts"' in html  # the navigation links the rollouts
    # one bar per wave, its segments by word
    waves = re.findall(r'<g class="wave" data-wave="(\d)" data-size="(\d)" data-started="(\w+)"',
                       html)
    assert waves == [("1", "1", "true"), ("2", "1", "false")]
    assert re.findall(r'class="seg" data-word="(\w+)" data-count="(\d)"', html) == [
        ("failure", "1"), ("pending", "1")]
    assert "no space &lt;for&gt; slot b" in html and "<for>" not in html  # escaped
    assert "already on 0.2.0" in html  # bike-3, left out
    assert client.get("/rollouts/r-9", headers=technician).status_code == 404
    analyst = bearer(api_token(app, "analyst"))
    assert client.get("/rollouts", headers=analyst).status_code == 403
    assert client.get("/rollouts", follow_redirects=False).status_code == 303
