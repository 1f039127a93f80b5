"""The gateways' long-poll (GET /api/v1/gateway/watch): held until the gateway's configs, its
devices' update offers or the fleet's revocations change, or the wait ends; held requests take
no worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cloudkit import ADMIN, GatewaySim, b64_public, bearer, register
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from updatekit import Fleet, full, upload, write_release_pub

from cloud.main import create_app
from cloud.services.watch import Changes, Stamp
from cloud.settings import Settings
from fleetloop.procs import free_port

WATCH = "/api/v1/gateway/watch"


def _device(client: TestClient, device: str = "bike-1") -> None:
    r = client.post("/api/v1/devices", json={"id": device, "product": "bike"}, headers=ADMIN)
    assert r.status_code in (200, 201), r.text


def test_a_config_set_while_a_gateway_waits_ends_its_wait(client: TestClient,
                                                          gateway: GatewaySim) -> None:
    _device(client)
    now = client.get(WATCH, headers=bearer(gateway.token)).json()
    assert now["configs"] is False and now["revocations"]
    answers: list[dict[str, object]] = []

    def hold() -> None:
        answers.append(client.get(WATCH, params={"config": now["config"], "wait": 30},
                                  headers=bearer(gateway.token)).json())

    waiter = threading.Thread(target=hold)
    waiter.start()
    time.sleep(0.3)
    assert not answers  # held: nothing changed yet
    r = client.put("/api/v1/devices/bike-1/config", json={"settings": {"interval_ms": 500}},
                   headers=ADMIN)
    assert r.status_code == 200, r.text
    waiter.join(10)
    assert answers and answers[0]["configs"] is True and answers[0]["config"] > now["config"]
    feed = client.get("/api/v1/gateway/configs", params={"after": now["config"]},
                      headers=bearer(gateway.token)).json()
    assert [c["device"] for c in feed["configs"]] == ["bike-1"]


def test_a_revocation_changes_the_tag_and_the_wait_ends_with_nothing_new(
        client: TestClient, gateway: GatewaySim) -> None:
    _device(client)
    now = client.get(WATCH, params={"revocations": ""}, headers=bearer(gateway.token)).json()
    held = client.get(WATCH, params={"config": now["config"], "revocations": now["revocations"],
                                     "wait": 0.5}, headers=bearer(gateway.token)).json()
    assert held == now  # the wait ended, nothing changed
    r = client.post("/api/v1/devices/bike-1/revoke", json={"reason": "stolen"}, headers=ADMIN)
    if r.status_code == 404:
        pytest.skip("no revoke endpoint under this path")
    assert r.status_code in (200, 201), r.text
    after = client.get(WATCH, params={"revocations": now["revocations"], "wait": 5},
                       headers=bearer(gateway.token)).json()
    assert after["revocations"] != now["revocations"]


def test_an_offer_ends_the_wait_of_its_devices_gateway_only(
        client: TestClient, gateway: GatewaySim, home: Path) -> None:
    release = Ed25519PrivateKey.generate()
    write_release_pub(home, release)
    assert upload(client, full(release)).status_code == 201
    key = Ed25519PrivateKey.generate()
    other = GatewaySim(client, "gw-2", key, register(client, "gw-2", key))
    Fleet(client, gateway, ["bike-1"])
    Fleet(client, other, ["bike-2"])
    tags = {gw.id: client.get(WATCH, params={"offers": ""}, headers=bearer(gw.token)).json()[
        "offers"] for gw in (gateway, other)}
    assert tags["gw-1"] == tags["gw-2"]  # nothing offered to either
    answers: dict[str, dict[str, object]] = {}

    def hold(gw: GatewaySim) -> threading.Thread:
        def run() -> None:
            answers[gw.id] = client.get(WATCH, params={"offers": tags[gw.id], "wait": 30},
                                        headers=bearer(gw.token)).json()
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    mine, theirs = hold(gateway), hold(other)
    time.sleep(0.3)
    assert not answers  # held: nothing changed yet
    r = client.post("/api/v1/rollouts", json={"bundle": "bike-0.2.0", "devices": ["bike-1"]},
                    headers=ADMIN)
    assert r.status_code == 201, r.text
    mine.join(10)
    assert answers["gw-1"]["offers"] != tags["gw-1"]
    assert theirs.is_alive() and "gw-2" not in answers  # not its devices: still held
    r = client.post("/api/v1/rollouts", json={"bundle": "bike-0.2.0", "devices": ["bike-2"]},
                    headers=ADMIN)
    assert r.status_code == 201, r.text
    theirs.join(10)
    assert answers["gw-2"]["offers"] not in (tags["gw-2"], answers["gw-1"]["offers"])
    # The tag is what the pull would list: taking the offers (pending -> offered) keeps it.
    assert client.get("/api/v1/gateway/updates", headers=bearer(gateway.token)).status_code == 200
    again = client.get(WATCH, params={"offers": answers["gw-1"]["offers"]},
                       headers=bearer(gateway.token)).json()
    assert again["offers"] == answers["gw-1"]["offers"]
    r = client.get(WATCH, params={"offers": "x" * 65}, headers=bearer(gateway.token))
    assert r.status_code == 422 and "offers" in r.text  # a tag is at most 64 characters


def test_a_change_wakes_each_waiter_once_not_in_a_loop() -> None:
    """The router's loop over the shared watch: look (fresh), then wait on the stamp seen. A
    waiter that looks between a change and the shared read must not loop on the older shared
    stamp until the read comes (every held request would spin after every change)."""
    now = {"stamp": Stamp(1, "r", 0)}
    changes = Changes(lambda: now["stamp"], every_s=0.05)

    async def waiter(looks: list[Stamp], for_s: float) -> None:
        end = time.monotonic() + for_s
        while (left := end - time.monotonic()) > 0:
            seen_at, since = time.monotonic(), now["stamp"]
            looks.append(since)
            await asyncio.sleep(0)  # the look's thread-pool hop
            await changes.wait(since, seen_at, left)

    async def main() -> tuple[list[Stamp], list[Stamp]]:
        early: list[Stamp] = []
        late: list[Stamp] = []
        first = asyncio.ensure_future(waiter(early, 0.6))
        await asyncio.sleep(0.2)
        now["stamp"] = Stamp(1, "r", 1)  # a change; the shared read comes within 0.05 s
        second = asyncio.ensure_future(waiter(late, 0.4))  # looks before it
        await asyncio.gather(first, second)
        return early, late

    early, late = asyncio.run(main())
    assert early[0] == Stamp(1, "r", 0) and early[-1] == Stamp(1, "r", 1)
    assert len(early) <= 3 and len(late) <= 3, (len(early), len(late))


def test_only_a_gateway_may_watch(client: TestClient) -> None:
    assert client.get(WATCH).status_code == 401
    assert client.get(WATCH, headers=ADMIN).status_code == 403
    assert client.get(WATCH, params={"wait": 61}, headers=ADMIN).status_code in (403, 422)


def test_held_requests_leave_the_server_free(tmp_path: Path) -> None:
    """60 held requests (more than the thread pool's 40) on one uvicorn worker: the cloud still
    answers everything else, and each held one answers when its wait ends."""
    uvicorn = pytest.importorskip("uvicorn")
    home = tmp_path / "home"
    settings = Settings.load(home=home, admin_token="watch-admin-token", dev=False, env={})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", limit_concurrency=1000))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        admin = {"Authorization": "Bearer watch-admin-token"}
        r = httpx.post(url + "/api/v1/gateways", headers=admin, json={
            "id": "gw-1", "public_key": b64_public(Ed25519PrivateKey.generate())})
        token = r.json()["token"]

        def hold(_: int) -> int:
            return httpx.get(url + WATCH, params={"wait": 1.5}, timeout=30,
                             headers=bearer(token)).status_code

        with ThreadPoolExecutor(60) as pool:
            held = [pool.submit(hold, i) for i in range(60)]
            time.sleep(0.5)
            assert not any(f.done() for f in held)
            # Another gateway's upload path and the health check still answer meanwhile.
            assert httpx.get(url + "/healthz", timeout=3).status_code == 200
            assert httpx.get(url + "/api/v1/gateways", headers=admin, timeout=3).status_code == 200
            assert [f.result(timeout=30) for f in held] == [200] * 60
    finally:
        server.should_exit = True
        thread.join(10)
