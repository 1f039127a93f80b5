"""Rollouts through the API, on both backends: the plan (waves, who is left out and why), the
words devices report through the signed ingest, the cloud's verdicts (success after a soak,
failure by deadline or a failed soak), auto-pause, pause / resume / abort, and each gateway
seeing only its own devices' offers. Time is the app's clock, moved by hand: no sleeping,
except where the cloud's own ticker is what is tested. The offers stamp (what the gateways'
long-poll waits on) moves with what changes offers, not with every pull or heartbeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cloudkit import (
    ADMIN,
    Clock,
    GatewaySim,
    api_token,
    bearer,
    enrol,
    record_key,
    register,
    signed,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from updatekit import FILES, Fleet, delta, full, upload, write_release_pub

from cloud.main import create_app
from cloud.services import progress
from cloud.settings import Settings
from protocol import bundle as bundle_codec
from protocol import ota

NEW = {**FILES, "device/agent.mpy": b"agent 0.2.0" * 40}
OFFER = bundle_codec.read(full(Ed25519PrivateKey.generate(), files=NEW)).id()


@pytest.fixture
def release(home: Path, client: TestClient) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    write_release_pub(home, key)
    assert upload(client, full(key, files=NEW)).status_code == 201
    return key


def create(client: TestClient, expect: int = 201, **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/rollouts", json={"bundle": "bike-0.2.0", **body}, headers=ADMIN)
    assert r.status_code == expect, r.text
    out: dict[str, Any] = r.json()
    return out


def get(client: TestClient, rollout: str = "r-1") -> dict[str, Any]:
    r = client.get(f"/api/v1/rollouts/{rollout}", headers=ADMIN)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def words(rollout: dict[str, Any]) -> dict[str, str]:
    return {d["device"]: d["word"] for d in rollout["devices"]}


def wave_of(rollout: dict[str, Any], k: int) -> list[str]:
    return [d["device"] for d in rollout["devices"] if d["wave"] == k]


def pull(client: TestClient, gateway: GatewaySim) -> list[dict[str, Any]]:
    r = client.get("/api/v1/gateway/updates", headers=bearer(gateway.token))
    assert r.status_code == 200, r.text
    offers: list[dict[str, Any]] = r.json()["offers"]
    return offers


def bikes(n: int) -> list[str]:
    return [f"bike-{i}" for i in range(1, n + 1)]


def test_the_plan_waves_and_who_is_left_out(
    client: TestClient, gateway: GatewaySim, release: Ed25519PrivateKey
) -> None:
    fleet = Fleet(client, gateway, bikes(9))
    fleet.push(states=[fleet.state("bike-8", fw="0.2.0")])
    r = client.post("/api/v1/devices/bike-9/revoke", json={"reason": "stolen"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    enrol(client, "mirror-1", record_key(7), "mirror")
    plan = create(client, devices=[*bikes(9), "mirror-1"])
    assert (plan["id"], plan["state"], plan["product"], plan["version"]) == (
        "r-1", "running", "bike", "0.2.0")
    # 7 targets: 1% and 10% still get one device each, then 2 and 3
    assert [(w["percent"], w["devices"]) for w in plan["waves"]] == [
        (1, 1), (10, 1), (50, 2), (100, 3)]
    assert [w["started_ms"] is not None for w in plan["waves"]] == [True, False, False, False]
    assert plan["counts"] == {"pending": 7}
    assert {s["device"]: s["reason"] for s in plan["skipped"]} == {
        "bike-8": "already on 0.2.0", "bike-9": "revoked",
        "mirror-1": "a mirror, the bundle is for bike"}
    # the seeded order is the same on every read, and not the ids' order
    order = [d["device"] for d in plan["devices"]]
    assert sorted(order) == sorted(set(bikes(7))) and get(client)["devices"] == plan["devices"]
    # a second rollout cannot take devices the first holds
    client.put("/api/v1/cohorts/bikes", json={"rule": {"product": "bike"}}, headers=ADMIN)
    r = client.post("/api/v1/rollouts", json={"bundle": "bike-0.2.0", "cohort": "bikes"},
                    headers=ADMIN)
    assert r.status_code == 422 and "no device to update" in r.json()["reasons"]
    assert "bike-1: in rollout r-1 (pending)" in r.json()["reasons"]
    listed = client.get("/api/v1/rollouts", headers=ADMIN).json()
    assert [(x["id"], x["devices"]) for x in listed] == [("r-1", None)]


BAD = [
    ({"bundle": "bike-9.9.9", "devices": ["bike-1"]}, "bundle bike-9.9.9 not found"),
    ({"bundle": "bike-0.2.0", "cohort": "nobody"}, "cohort nobody not found"),
    ({"bundle": "bike-0.2.0", "devices": ["bike-1", "ghost-1"]}, "device ghost-1 not found"),
    ({"bundle": "bike-0.2.0", "devices": ["bike-1"], "waves": [50, 10]}, "must rise"),
    ({"bundle": "bike-0.2.0", "devices": ["bike-1"], "waves": [10, 50]}, "must be 100"),
    ({"bundle": "bike-0.2.0", "devices": ["bike-1"], "cohort": "c"}, "either a cohort"),
    ({"bundle": "bike-0.2.0", "devices": ["bike-1"], "failure_threshold": 2}, "less than"),
    ({"bundle": "../etc", "devices": ["bike-1"]}, "pattern"),
]


def test_a_rollout_that_cannot_start_says_why(
    client: TestClient, gateway: GatewaySim, release: Ed25519PrivateKey
) -> None:
    Fleet(client, gateway, ["bike-1"])
    for body, says in BAD:
        r = client.post("/api/v1/rollouts", json=body, headers=ADMIN)
        assert r.status_code == 422 and says in r.text, (body, r.text)
    assert client.get("/api/v1/rollouts", headers=ADMIN).json() == []


def test_words_soak_success_and_the_next_waves(
    client: TestClient, gateway: GatewaySim, clock: Clock, release: Ed25519PrivateKey
) -> None:
    fleet = Fleet(client, gateway, bikes(3))
    plan = create(client, devices=bikes(3), waves=[1, 100], soak_s=60, deadline_s=600)
    (first,) = wave_of(plan, 1)
    later = wave_of(plan, 2)
    offers = pull(client, gateway)
    assert [o["device"] for o in offers] == [first]
    assert offers[0]["bundle"] == "bike-0.2.0" and offers[0]["base"] is None
    manifest = bundle_codec.read(full(release, files=NEW)).signed_manifest
    assert ota.decode_offer(ota.encode_offer(**{
        "offer_id": OFFER, "product": "bike", "version": "0.2.0", "size": len(manifest),
        "rollout": "r-1"})) == offers[0]["offer"]
    assert words(get(client)) == {first: "offered", **dict.fromkeys(later, "pending")}

    fleet.say(first, "downloading", OFFER, update_progress=40)
    row = next(d for d in get(client)["devices"] if d["device"] == first)
    assert (row["word"], row["progress"]) == ("downloading", 40)
    fleet.say(first, "downloading", "0123456789abcdef")  # another offer's state: ignored
    for word in ("verified", "installing", "rebooting"):
        fleet.say(first, word, OFFER)
    fleet.say(first, "committed", OFFER, fw="0.2.0")
    fleet.say(first, "rebooting", OFFER, t=1)  # a late copy, its clock restarted: no undo
    assert words(get(client))[first] == "committed"
    fleet.records(first, 3)
    clock.now_s += 31
    fleet.push(states=[fleet.state(first, why="heartbeat", fw="0.2.0", heap_low=29000)])
    clock.now_s += 20
    assert words(get(client))[first] == "committed"  # 51 s into a 60 s soak
    clock.now_s += 10
    state = get(client)
    assert words(state)[first] == "success"
    assert state["waves"][1]["started_ms"] == clock.now_s * 1000  # the soak is over: wave 2
    assert sorted(o["device"] for o in pull(client, gateway)) == sorted(later)

    # wave 2: one device updates, the other is off (it stays offered, never failed)
    done, off = later
    fleet.say(done, "committed", OFFER, fw="0.2.0")
    fleet.records(done)
    clock.now_s += 40
    fleet.push(states=[fleet.state(done, why="heartbeat", fw="0.2.0")])
    clock.now_s += 30
    state = get(client)
    assert state["state"] == "completed", state
    assert words(state) == {first: "success", done: "success", off: "offered"}
    assert [o["device"] for o in pull(client, gateway)] == [off]  # it installs when it is back
    entries = client.get("/api/v1/audit", params={"target": "rollout:r-1"}, headers=ADMIN).json()
    assert [(e["action"], e["actor"]) for e in entries][:2] == [
        ("rollout.complete", "system"), ("rollout.create", "bootstrap admin")]


def test_deadline_fails_a_silent_downloader_not_a_device_that_never_started(
    client: TestClient, gateway: GatewaySim, clock: Clock, release: Ed25519PrivateKey
) -> None:
    fleet = Fleet(client, gateway, bikes(3))
    create(client, devices=bikes(3), waves=[50, 100], deadline_s=120, failure_threshold=1)
    state = get(client)
    first = wave_of(state, 1)
    pull(client, gateway)
    fleet.say(first[0], "downloading", OFFER, update_progress=10)
    clock.now_s += 119
    assert words(get(client))[first[0]] == "downloading"
    clock.now_s += 2
    state = get(client)
    row = next(d for d in state["devices"] if d["device"] == first[0])
    assert (row["word"], row["reason"]) == ("failure", "silent for 121 s after it started"
                                                        " downloading")
    assert words(state)[first[1]] == "offered"  # never started: off, not failed
    assert set(words(state)[d] for d in wave_of(state, 2)) == {"pending"}


def test_soak_failures_reset_heap_and_no_records(
    client: TestClient, gateway: GatewaySim, clock: Clock, release: Ed25519PrivateKey
) -> None:
    fleet = Fleet(client, gateway, bikes(3))
    create(client, devices=bikes(3), waves=[100], soak_s=100, failure_threshold=1)
    pull(client, gateway)  # baseline heap_low: 30000
    for d in bikes(3):
        fleet.say(d, "committed", OFFER, fw="0.2.0", resets=1)
        fleet.records(d) if d != "bike-3" else None
    # A power cut after the commit says nothing about the version; a crash does.
    fleet.push(states=[fleet.state("bike-1", fw="0.2.0", resets=2, reset_cause="power")])
    assert {d["device"]: d["word"] for d in get(client)["devices"]}["bike-1"] == "committed"
    fleet.push(states=[fleet.state("bike-1", fw="0.2.0", resets=3, reset_cause="crash")])
    fleet.push(states=[fleet.state("bike-2", fw="0.2.0", resets=1, heap_low=20100)])
    reasons = {d["device"]: (d["word"], d["reason"]) for d in get(client)["devices"]}
    assert reasons["bike-1"] == ("failure", "reset after commit (crash)")
    assert reasons["bike-2"] == ("failure", "heap_low 20100 < 80% of 30000")
    assert reasons["bike-3"] == ("committed", "")
    clock.now_s += 60
    fleet.push(states=[fleet.state("bike-3", fw="0.2.0", resets=1, buffered=5)])
    clock.now_s += 40
    state = get(client)
    assert {d["device"]: d["reason"] for d in state["devices"]}["bike-3"] == \
        "records stuck since commit"
    assert state["state"] == "completed" and state["counts"] == {"failure": 3}


def test_auto_pause_resume_pause_and_abort(
    client: TestClient, app: FastAPI, gateway: GatewaySim, clock: Clock,
    release: Ed25519PrivateKey,
) -> None:
    fleet = Fleet(client, gateway, bikes(7))
    plan = create(client, cohort=None, devices=bikes(7), soak_s=60)
    (first,) = wave_of(plan, 1)
    pull(client, gateway)
    fleet.say(first, "failure", OFFER, update_reason="sha256 of device/agent.mpy differs")
    state = get(client)
    assert (state["state"], state["reason"]) == ("auto_paused", "wave 1: 1 of 1 failed"
                                                                " (100% > 10%)")
    assert state["devices"][0]["reason"] == "sha256 of device/agent.mpy differs"
    (entry,) = client.get("/api/v1/audit", params={"action": "rollout.auto_pause"},
                          headers=ADMIN).json()
    assert (entry["actor"], entry["role"]) == ("system", "system")
    ops = bearer(api_token(app, "ops", "olga"))
    assert client.post("/api/v1/rollouts/r-1/pause", headers=ops).status_code == 409
    r = client.post("/api/v1/rollouts/r-1/resume", headers=ops)
    assert r.status_code == 200 and r.json()["state"] == "running"
    (entry,) = client.get("/api/v1/audit", params={"action": "rollout.resume"},
                          headers=ADMIN).json()
    assert entry["actor"] == "olga" and "after an auto-pause" in entry["after"]["reason"]
    assert entry["after"]["accepted"] == {"1": 1}
    clock.now_s += 60
    state = get(client)
    assert state["state"] == "running" and state["waves"][1]["started_ms"] is not None
    (second,) = wave_of(state, 2)
    pull(client, gateway)
    fleet.say(second, "downloading", OFFER, update_progress=5)

    assert client.post("/api/v1/rollouts/r-1/pause", headers=ops).json()["state"] == "paused"
    # paused: the device mid-download keeps its offer, nobody gets a new one
    clock.now_s += 60
    assert [o["device"] for o in pull(client, gateway)] == [second]
    assert get(client)["waves"][2]["started_ms"] is None

    r = client.post("/api/v1/rollouts/r-1/abort", headers=ops)
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    assert pull(client, gateway) == []
    fleet.say(second, "committed", OFFER, fw="0.2.0")  # too late: the words stay
    assert words(get(client))[second] == "downloading"
    assert client.post("/api/v1/rollouts/r-1/abort", headers=ops).status_code == 409
    actions = [e["action"] for e in client.get("/api/v1/audit", params={
        "target": "rollout:r-1"}, headers=ADMIN).json() if e["outcome"] == "ok"]
    assert actions[:4] == ["rollout.abort", "rollout.pause", "rollout.resume",
                           "rollout.auto_pause"]
    assert client.post("/api/v1/rollouts/r-99/pause", headers=ops).status_code == 404


def test_a_gateway_sees_only_its_own_devices_offers(
    client: TestClient, gateway: GatewaySim, release: Ed25519PrivateKey
) -> None:
    key = Ed25519PrivateKey.generate()
    other = GatewaySim(client, "gw-2", key, register(client, "gw-2", key))
    assert upload(client, full(release, version="0.1.0")).status_code == 201
    assert upload(client, delta(release, FILES, NEW)).status_code == 201
    Fleet(client, gateway, ["bike-1"])
    Fleet(client, other, ["bike-2"])
    create(client, devices=["bike-1"], waves=[100])
    create(client, devices=["bike-2"], waves=[100], bundle="bike-0.2.0-from-0.1.0")
    mine = pull(client, gateway)
    theirs = pull(client, other)
    assert [(o["device"], o["bundle"], o["base"]) for o in mine] == [
        ("bike-1", "bike-0.2.0", None)]
    assert [(o["device"], o["bundle"], o["base"]) for o in theirs] == [
        ("bike-2", "bike-0.2.0-from-0.1.0", "0.1.0")]
    assert mine[0]["offer"]["id"] == theirs[0]["offer"]["id"] == OFFER

    def fetch(gw: GatewaySim, path: str) -> Any:
        return client.get(path, headers=bearer(gw.token))

    whole = fetch(gateway, "/api/v1/gateway/bundles/bike-0.2.0")
    assert whole.status_code == 200 and bundle_codec.read(whole.content).id() == OFFER
    assert fetch(other, "/api/v1/gateway/bundles/bike-0.2.0").status_code == 404
    assert fetch(gateway, "/api/v1/gateway/bundles/bike-0.2.0-from-0.1.0").status_code == 404
    patch = fetch(other, "/api/v1/gateway/bundles/bike-0.2.0-from-0.1.0").content
    base = fetch(other, "/api/v1/gateway/manifests/0.1.0?product=bike")
    assert base.status_code == 200
    text = base.content[ota.SIG_BYTES:].decode()
    assert bundle_codec.verify(bundle_codec.read(patch), raw_pub(release), text) == []
    assert fetch(gateway, "/api/v1/gateway/manifests/0.1.0?product=bike").status_code == 404
    assert fetch(other, "/api/v1/gateway/manifests/0.1.0?product=mirror").status_code == 404
    assert client.get("/api/v1/gateway/updates", headers=ADMIN).status_code == 403


def raw_pub(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_evaluations_at_once_move_a_rollout_once(
    client: TestClient, app: FastAPI, gateway: GatewaySim, clock: Clock,
    release: Ed25519PrivateKey,
) -> None:
    """Several workers reading at the same moment (threads, each with its own connection):
    the next wave starts once, the completion is audited once."""
    from concurrent.futures import ThreadPoolExecutor

    from cloud.services import rollouts

    Fleet(client, gateway, bikes(2))
    create(client, devices=bikes(2), waves=[50, 100], soak_s=10)

    def read(_: int) -> str:
        with app.state.db.connection() as store:
            return rollouts.view(store, "r-1", round(clock.now_s * 1000)).rollout.state

    for step in (10, 10):
        clock.now_s += step
        with ThreadPoolExecutor(8) as pool:
            states = set(pool.map(read, range(16)))
    assert states == {"completed"}
    state = get(client)
    assert state["waves"][1]["started_ms"] == round((clock.now_s - 10) * 1000)
    done = client.get("/api/v1/audit", params={"action": "rollout.complete"}, headers=ADMIN)
    assert len(done.json()) == 1


@contextmanager
def serving(settings: Settings, clock: Clock, home: Path, tick_s: float
            ) -> Iterator[tuple[FastAPI, TestClient, GatewaySim]]:
    """An app whose ticker runs every tick_s (0: never), with gw-1 registered and the bundle
    uploaded."""
    application = create_app(replace(settings, tick_s=tick_s), clock=clock)
    try:
        with TestClient(application) as c:
            key = Ed25519PrivateKey.generate()
            gw = GatewaySim(c, "gw-1", key, register(c, "gw-1", key))
            release = Ed25519PrivateKey.generate()
            write_release_pub(home, release)
            assert upload(c, full(release, files=NEW)).status_code == 201
            yield application, c, gw
    finally:
        application.state.db.close()


def _store_read(app: FastAPI, read: Callable[[Any], Any]) -> Any:
    """Read the store directly: a GET of the rollout would move it on by itself."""
    with app.state.db.connection() as store:
        return read(store)


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := check()):
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_the_cloud_starts_the_next_wave_by_its_own_clock(
    settings: Settings, clock: Clock, home: Path
) -> None:
    """Nobody reads the rollout nor pulls offers: the ticker starts wave 2 once the soak is
    over, and a gateway holding the watch for its offers hears of it."""
    with serving(settings, clock, home, tick_s=0.05) as (app, client, gateway):
        Fleet(client, gateway, bikes(2))
        create(client, devices=bikes(2), waves=[50, 100], soak_s=60)

        def second_started(store: Any) -> bool:
            return store.waves(1)[1].started_ms is not None

        tag = client.get("/api/v1/gateway/watch", params={"offers": ""},
                         headers=bearer(gateway.token)).json()["offers"]
        held: list[dict[str, Any]] = []
        waiter = threading.Thread(target=lambda: held.append(client.get(
            "/api/v1/gateway/watch", params={"offers": tag, "wait": 30},
            headers=bearer(gateway.token)).json()))
        waiter.start()
        time.sleep(0.5)  # ten ticks inside the soak: nothing moves
        assert not _store_read(app, second_started) and not held
        clock.now_s += 60
        _until(lambda: _store_read(app, second_started), 10, "the ticker to start wave 2")
        waiter.join(10)
        assert held and held[0]["offers"] != tag
        started = _store_read(app, lambda store: store.waves(1)[1].started_ms)
        assert started == round(clock.now_s * 1000)
        assert sorted(o["device"] for o in pull(client, gateway)) == bikes(2)


def test_a_pull_does_not_move_rollouts_and_evaluate_does(
    settings: Settings, clock: Clock, home: Path
) -> None:
    """With the ticker off, time moves only when a test (or a read) evaluates: the gateway's
    pull only takes its offers."""
    with serving(settings, clock, home, tick_s=0) as (app, client, gateway):
        Fleet(client, gateway, bikes(2))
        create(client, devices=bikes(2), waves=[50, 100], soak_s=10)
        assert len(pull(client, gateway)) == 1
        clock.now_s += 11
        assert len(pull(client, gateway)) == 1  # the soak is over, but a pull moves nothing
        assert _store_read(app, lambda store: store.waves(1)[1].started_ms) is None
        _store_read(app, lambda store: progress.evaluate(store, round(clock.now_s * 1000)))
        assert len(pull(client, gateway)) == 2


def test_the_offers_stamp_moves_with_offers_not_with_pulls_or_heartbeats(
    settings: Settings, clock: Clock, home: Path
) -> None:
    with serving(settings, clock, home, tick_s=0) as (app, client, gateway):
        fleet = Fleet(client, gateway, bikes(3))

        def stamp() -> int:
            return int(_store_read(app, lambda store: store.offers_stamp()))

        def moved(step: Callable[[], Any]) -> bool:
            before = stamp()
            step()
            return stamp() != before

        ops = bearer(api_token(app, "ops", "olga"))
        plan: dict[str, Any] = {}
        assert moved(lambda: plan.update(create(client, devices=bikes(3), waves=[1, 100],
                                                soak_s=60)))
        (first,) = wave_of(plan, 1)
        assert not moved(lambda: pull(client, gateway))  # pending -> offered: same offers
        assert not moved(lambda: fleet.say(first, "downloading", OFFER, update_progress=5))
        assert moved(lambda: fleet.say(first, "committed", OFFER, fw="0.2.0"))  # offer goes
        fleet.records(first)
        clock.now_s += 31
        assert not moved(lambda: fleet.push(states=[fleet.state(
            first, why="heartbeat", fw="0.2.0")]))  # a heartbeat in the soak
        clock.now_s += 30
        assert moved(lambda: get(client))  # success, and wave 2 starts
        assert get(client)["state"] == "running"
        assert not moved(lambda: pull(client, gateway))
        second = wave_of(get(client), 2)
        fleet.say(second[0], "downloading", OFFER, update_progress=5)
        # Paused, the device that did not start loses its offer, the downloader keeps it;
        # each control moves the stamp, and so does the downloader leaving.
        assert moved(lambda: client.post("/api/v1/rollouts/r-1/pause", headers=ops))
        assert [o["device"] for o in pull(client, gateway)] == [second[0]]
        assert moved(lambda: fleet.say(second[0], "failure", OFFER, update_reason="hash"))
        assert moved(lambda: client.post("/api/v1/rollouts/r-1/abort", headers=ops))
        assert pull(client, gateway) == []


def test_a_device_of_a_rollout_assigned_to_a_gateway_brings_its_offer_at_once(
    settings: Settings, clock: Clock, home: Path
) -> None:
    """Its first delivery assigns a device to a gateway, an operator may move it: either way
    its offer now concerns another gateway, whose long-poll must hear of it."""
    with serving(settings, clock, home, tick_s=0) as (app, client, gateway):
        key = Ed25519PrivateKey.generate()
        other = GatewaySim(client, "gw-2", key, register(client, "gw-2", key))
        enrol(client, "bike-1", record_key(5))  # enrolled, never heard: no gateway yet
        create(client, devices=["bike-1"], waves=[100])

        def tag(gw: GatewaySim) -> str:
            r = client.get("/api/v1/gateway/watch", params={"offers": ""},
                           headers=bearer(gw.token))
            return str(r.json()["offers"])

        def stamp() -> int:
            return int(_store_read(app, lambda store: store.offers_stamp()))

        before = (stamp(), tag(gateway), tag(other))
        assert gateway.push([signed("bike-1", 1, record_key(5))]).status_code == 200
        assert stamp() != before[0] and tag(gateway) != before[1]
        assert [o["device"] for o in pull(client, gateway)] == ["bike-1"]
        moved = stamp()
        r = client.put("/api/v1/devices/bike-1/gateway", json={"gateway": "gw-2"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert stamp() != moved and tag(other) != before[2] and tag(gateway) == before[1]
        assert pull(client, gateway) == [] and len(pull(client, other)) == 1
