"""Policies as experiments over HTTP: creation with its checks, the seeded split, the change
delivered to the treatment arm only (a policy layer of profile resolution), consent and
overlap exclusions, roles, stop, and the cloud judging a policy by itself on record time."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cloudkit import ADMIN, api_token, bearer
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.loop.activity import DAY_MS, WEEK_MS
from cloud.services import policies as ps
from fleetloop.fleet.play import Player

END = 1_780_000_000_000
START = END - 16 * WEEK_MS
NOW = START + 6 * WEEK_MS  # six weeks of history when the policies are made


def body(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": "coach-the-fading", "product": "bike", "condition": [],
        "change": {"coach_mode": 1}, "outcome": {"kpi": "rides_per_week", "goal": "increase"},
        "treatment_share": 0.5, "window_days": 14, "max_extensions": 1, "seed": 11}
    out.update(fields)
    return out


@pytest.fixture
def fleet(app: FastAPI, client: TestClient) -> Player:
    """12 bikes and 2 mirrors with six weeks of rides; bike-12 allows only essential data."""
    with app.state.db.connection() as store:
        player = Player(store, 5, [("bike", 12), ("mirror", 2)], START, END)
        player.play_until(NOW)
        with store.transaction():
            row = store.get_device("bike-12")
            assert row is not None
            store.save_device(replace(row, consent_tier="essential"))
    return player


@pytest.fixture
def registered(app: FastAPI, client: TestClient) -> None:
    """Two bikes known to the cloud, no data: enough for what is refused before any is read."""
    with app.state.db.connection() as store:
        Player(store, 5, [("bike", 2)], START, END)


def desired(client: TestClient, device: str) -> dict[str, Any] | None:
    got = client.get(f"/api/v1/devices/{device}/config", headers=ADMIN).json()["desired"]
    return None if got is None else dict(got)


def test_create_splits_and_delivers_to_treatment_only(
    app: FastAPI, client: TestClient, fleet: Player
) -> None:
    ops = bearer(api_token(app, "ops"))
    r = client.post("/api/v1/policies", json=body(), headers=ops)
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["state"] == "running" and p["seed"] == 11 and p["extensions"] == 0
    # every bike but the one whose consent does not cover rides_per_week (usage)
    assert p["excluded"] == [{"device": "bike-12",
                              "reason": "needs consent tier usage (rides_per_week)"}]
    arms = sorted(p["treatment"] + p["control"])
    assert arms == sorted(f"bike-{n}" for n in range(1, 12))
    assert (p["treatment"], p["control"]) == ps.split(arms, 0.5, 11)  # reproducible
    assert len(p["treatment"]) == 6 and not set(p["treatment"]) & set(p["control"])
    # the first window starts at the newest record time among the participants
    newest = max(fleet.store.get_device(d).last_seen_ms or 0 for d in arms)  # type: ignore[union-attr]
    assert p["window_start_ms"] == newest
    assert p["window_end_ms"] == newest + 14 * DAY_MS
    for d in p["treatment"]:
        got = desired(client, d)
        assert got is not None and got["settings"] == {"coach_mode": 1}
    for d in p["control"] + ["bike-12", "mirror-1"]:
        assert desired(client, d) is None
    drift = {d["device"]: d for d in client.get("/api/v1/drift", headers=ADMIN).json()}
    assert set(p["treatment"]) <= set(drift)  # a desired config none has applied yet
    # analysts read; they do not create or stop
    analyst = bearer(api_token(app, "analyst"))
    assert client.get(f"/api/v1/policies/{p['id']}", headers=analyst).json() == p
    assert [x["id"] for x in client.get("/api/v1/policies", headers=analyst).json()] == [p["id"]]
    assert client.post("/api/v1/policies", json=body(name="other"),
                       headers=analyst).status_code == 403
    assert client.post(f"/api/v1/policies/{p['id']}/stop", headers=analyst).status_code == 403
    audit = [e for e in client.get("/api/v1/audit?action=policy.create", headers=ADMIN).json()
             if e["outcome"] == "ok"]
    assert len(audit) == 1 and audit[0]["target"] == f"policy:{p['id']}" and audit[0]["actor"] == "ops-token"


def test_a_device_takes_part_in_one_running_experiment(
    app: FastAPI, client: TestClient, fleet: Player
) -> None:
    client.put("/api/v1/cohorts/early", json={"devices": ["bike-1", "bike-2", "bike-3"]},
               headers=ADMIN)
    first = client.post("/api/v1/policies", json=body(cohort="early"), headers=ADMIN).json()
    assert sorted(first["treatment"] + first["control"]) == ["bike-1", "bike-2", "bike-3"]
    r = client.post("/api/v1/policies", json=body(name="push-power",
                                                  change={"target_power_w": 400}),
                    headers=ADMIN)
    assert r.status_code == 201, r.text
    second = r.json()
    busy = {e["device"]: e["reason"] for e in second["excluded"]}
    assert busy["bike-1"] == busy["bike-2"] == "in running policy coach-the-fading"
    assert not {"bike-1", "bike-2", "bike-3"} & set(second["treatment"] + second["control"])
    # all of the cohort is busy now: nobody left to experiment on
    r = client.post("/api/v1/policies", json=body(name="third", cohort="early"),
                    headers=ADMIN)
    assert r.status_code == 422 and "at least 2" in r.text
    # stopping the first frees its devices; its treatment's config loses the change
    stopped = client.post(f"/api/v1/policies/{first['id']}/stop", headers=ADMIN)
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    for d in first["treatment"]:
        got = desired(client, d)
        assert got is not None and got["version"] == 2 and got["settings"] == {}
    assert client.post(f"/api/v1/policies/{first['id']}/stop",
                       headers=ADMIN).status_code == 409
    r = client.post("/api/v1/policies", json=body(name="third", cohort="early"), headers=ADMIN)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("fields", "words"), [
    ({"outcome": {"kpi": "rides_per_fortnight"}}, "unknown KPI 'rides_per_fortnight'"),
    ({"condition": [{"kpi": "egt_margin_degr", "op": "<", "value": 5}]},
     "unknown KPI 'egt_margin_degr' for bike (a KPI of engine)"),
    ({"outcome": {"kpi": "sessions_per_week"}}, "(a KPI of mirror)"),
    ({"change": {"coach_mode": 5}}, "coach_mode must be an int in 0..1"),
    ({"change": {"turbo": 1}}, "unknown setting turbo"),
    ({"change": {}}, "at least one config key"),
    ({"treatment_share": 0.95}, "treatment_share"),
    ({"window_days": 0}, "window_days"),
    ({"max_extensions": 5}, "max_extensions"),
    ({"name": "Not A Name"}, "name"),
    ({"condition": [{"kpi": "rides_per_week", "op": "~", "value": 1}]}, "op"),
    ({"cohort": "nobody"}, "cohort nobody not found"),
    ({"devices": ["bike-1", "bike-99"]}, "device bike-99 not found"),
])
@pytest.mark.usefixtures("registered")
def test_refused_at_creation_with_the_reason(
    client: TestClient, fields: dict[str, Any], words: str
) -> None:
    r = client.post("/api/v1/policies", json=body(**fields), headers=ADMIN)
    assert r.status_code == 422, r.text
    assert words in r.text
    assert client.get("/api/v1/policies", headers=ADMIN).json() == []


@pytest.mark.usefixtures("registered")
def test_a_policy_on_devices_never_heard_from_is_refused(client: TestClient) -> None:
    """Its window would start at the epoch and be judged at once, on nothing."""
    r = client.post("/api/v1/policies", json=body(), headers=ADMIN)
    assert r.status_code == 422 and "has sent a record yet" in r.text, r.text
    r = client.post("/api/v1/policies", json=body(start_ms=NOW), headers=ADMIN)
    assert r.status_code == 201 and r.json()["window_start_ms"] == NOW, r.text


def test_a_name_in_use_is_refused(client: TestClient, fleet: Player) -> None:
    assert client.post("/api/v1/policies", json=body(), headers=ADMIN).status_code == 201
    r = client.post("/api/v1/policies", json=body(devices=["bike-12", "mirror-1"]),
                    headers=ADMIN)
    assert r.status_code == 422 and "name coach-the-fading is in use" in r.text
    assert client.get("/api/v1/policies/99", headers=ADMIN).status_code == 404


def test_a_technicians_device_pin_wins_over_the_policy(
    app: FastAPI, client: TestClient, fleet: Player
) -> None:
    client.put("/api/v1/profiles/product/bike", json={"settings": {"heartbeat_s": 120}},
               headers=ADMIN)
    p = client.post("/api/v1/policies", json=body(change={"coach_mode": 1, "programme": 2}),
                    headers=ADMIN).json()
    pinned = p["treatment"][0]
    client.put(f"/api/v1/profiles/device/{pinned}", json={"settings": {"programme": 0}},
               headers=ADMIN)
    assert desired(client, pinned)["settings"] == {  # type: ignore[index]
        "heartbeat_s": 120, "coach_mode": 1, "programme": 0}
    other = p["treatment"][1]
    assert desired(client, other)["settings"] == {  # type: ignore[index]
        "heartbeat_s": 120, "coach_mode": 1, "programme": 2}
    assert desired(client, p["control"][0])["settings"] == {"heartbeat_s": 120}  # type: ignore[index]


def test_the_cloud_judges_on_record_time_by_itself(
    app: FastAPI, client: TestClient, fleet: Player
) -> None:
    p = client.post("/api/v1/policies", json=body(change={"target_power_w": 2000},
                                                  max_extensions=0), headers=ADMIN).json()
    job = next(j for j in app.state.ticker._jobs if j.name == "policies")
    app.state.ticker.run_once(job)  # the record clock has not reached the window's end
    assert client.get(f"/api/v1/policies/{p['id']}", headers=ADMIN).json()["evaluations"] == []
    with app.state.db.connection() as store:
        fleet.store = store
        fleet.play_until(p["window_end_ms"] + DAY_MS)
        fleet.advance_clock(p["window_end_ms"] + DAY_MS)
    app.state.ticker.run_once(job)
    app.state.ticker.run_once(job)  # a second run finds nothing left to do
    got = client.get(f"/api/v1/policies/{p['id']}", headers=ADMIN).json()
    assert got["state"] in ("reverted", "kept")
    assert len(got["evaluations"]) == 1
    ev = got["evaluations"][0]
    assert ev["treatment_n"] + ev["control_n"] == 11
    assert ev["window_start_ms"] == p["window_start_ms"]
    assert ev["decision"] == {"reverted": "revert", "kept": "keep"}[got["state"]]
    entries = client.get(f"/api/v1/audit?target=policy:{p['id']}", headers=ADMIN).json()
    decided = [e for e in entries if e["actor"] == "system"]
    assert len(decided) == 1 and decided[0]["action"] == f"policy.{ev['decision']}"
    assert decided[0]["after"]["lift"] == ev["lift"]


def test_policy_pages_show_the_evidence_and_the_trail(
    app: FastAPI, client: TestClient, fleet: Player
) -> None:
    p = client.post("/api/v1/policies", json=body(name="push-power",
                                                  change={"target_power_w": 2000},
                                                  max_extensions=0), headers=ADMIN).json()
    with app.state.db.connection() as store:
        fleet.store = store
        fleet.play_until(p["window_end_ms"] + DAY_MS)
        fleet.advance_clock(p["window_end_ms"] + DAY_MS)  # heartbeats: every device heard
    job = next(j for j in app.state.ticker._jobs if j.name == "policies")
    app.state.ticker.run_once(job)
    got = client.get(f"/api/v1/policies/{p['id']}", headers=ADMIN).json()
    ev = got["evaluations"][0]
    analyst = bearer(api_token(app, "analyst"))
    listing = client.get("/policies", headers=analyst)
    assert listing.status_code == 200
    assert f'href="/policies/{p["id"]}"' in listing.text and 'href="/policies"' in listing.text
    page = client.get(f"/policies/{p['id']}", headers=analyst)
    assert page.status_code == 200
    html = page.text
    assert f'data-policy="{p["id"]}" data-state="{got["state"]}"' in html
    assert (f'<g class="evaluation" data-n="1" data-decision="{ev["decision"]}"'
            f' data-lift="{ev["lift"]}"') in html
    assert 'class="zero"' in html and 'class="interval"' in html
    assert html.count('href="/devices/bike-') >= 11  # the arms and the one left out
    assert "needs consent tier usage" in html
    trail = html.split('id="policy-audit"')[1]
    assert "policy.create" in trail and f"policy.{ev['decision']}" in trail and "system" in trail
    assert client.get("/policies", headers=bearer(api_token(app, "technician"))
                      ).status_code == 403
    assert client.get("/policies/99", headers=analyst).status_code == 404
