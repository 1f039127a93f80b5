"""Uplink: the spool is emptied only by the cloud's 2xx; outages, 5xx, 409 and 4xx keep data."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from gwkit import (
    GATEWAY,
    Device,
    FakeCloud,
    RunningGateway,
    gateway_settings,
    spool_records,
    wait_for,
)

from gateway.backoff import Backoff
from gateway.keys import GatewayKeys
from gateway.store import Store
from gateway.uplink import Outcome, Uplink


@pytest.fixture
def spooled(home: Path) -> Store:
    """A store with three sealed batches (records bike-1 1..30) waiting in the spool."""
    store = spool_records(home, "bike-1", 30)
    assert store.spool_counts() == (3, 30)
    return store


def _uplink(store: Store, home: Path, url: str) -> Uplink:
    return Uplink(store, GATEWAY, url, home / "gateways" / GATEWAY / "token",
                  Backoff(0.01, 0.05, random.Random(1)),
                  GatewayKeys.under(home, GATEWAY).load_batch_key(), timeout_s=2.0)


def _drain(up: Uplink, attempts: int = 10) -> list[Outcome]:
    with httpx.Client(timeout=2) as http:
        return [up.send_one(http) for _ in range(attempts)]


def test_an_unreachable_cloud_keeps_every_batch(spooled: Store, home: Path,
                                                cloud: FakeCloud) -> None:
    cloud.stop()  # nothing listens on its port now
    up = _uplink(spooled, home, cloud.url)
    assert set(_drain(up, 3)) == {Outcome.FAILED}
    assert spooled.spool_counts() == (3, 30)
    assert "unreachable" in (up.status()["last_error"] or "")
    cloud.start()
    assert _drain(up, 4) == [Outcome.SENT] * 3 + [Outcome.EMPTY]
    assert cloud.seqs("bike-1") == list(range(1, 31))
    st = up.status()
    assert st["sent_batches"] == 3 and st["sent_records"] == 30 and st["last_ok_ms"]


@pytest.mark.parametrize("mode, words", [("500", "cloud error 500"),
                                         ("409", "chain conflict"),
                                         ("401", "refused with 401")])
def test_refusals_keep_the_batch_and_say_why(spooled: Store, home: Path, cloud: FakeCloud,
                                             mode: str, words: str) -> None:
    cloud.mode = mode
    up = _uplink(spooled, home, cloud.url)
    assert _drain(up, 2) == [Outcome.FAILED] * 2
    assert spooled.spool_counts() == (3, 30)
    assert words in (up.status()["last_error"] or "")
    cloud.mode = "ok"
    assert _drain(up, 4) == [Outcome.SENT] * 3 + [Outcome.EMPTY]
    assert cloud.seqs("bike-1") == list(range(1, 31))


def test_a_batch_refused_for_itself_is_dead_lettered_and_the_rest_flows(
        spooled: Store, home: Path, cloud: FakeCloud) -> None:
    """A 4xx about the batch itself must not hold the spool: the batch is kept aside, a signed
    gap takes its place in the chain, and the batches behind it are delivered."""
    cloud.refuse_seqs = {2}
    up = _uplink(spooled, home, cloud.url)
    assert _drain(up, 5) == [Outcome.SENT] * 4 + [Outcome.EMPTY]  # 1, 2 refused, gap 2, 3
    assert cloud.seqs("bike-1") == list(range(1, 11)) + list(range(21, 31))
    [gap] = cloud.gaps
    assert (gap.seq, gap.status, gap.records) == (2, 422, 10)
    assert "refused (forced)" in gap.reason
    [dead] = spooled.dead_letters()
    assert (dead.seq, dead.status, dead.records) == (2, 422, 10)
    assert spooled.spool_counts() == (0, 0)
    assert up.status()["dead_lettered"] == 1
    assert "dead-lettered" in (up.status()["last_error"] or "")


def test_a_missing_token_keeps_the_batch(spooled: Store, home: Path, cloud: FakeCloud) -> None:
    (home / "gateways" / GATEWAY / "token").unlink()
    up = _uplink(spooled, home, cloud.url)
    assert _drain(up, 1) == [Outcome.FAILED]
    assert "no gateway token" in (up.status()["last_error"] or "")
    assert cloud.posts == 0 and spooled.spool_counts() == (3, 30)


def test_a_resent_batch_after_a_lost_2xx_is_harmless(spooled: Store, home: Path,
                                                     cloud: FakeCloud) -> None:
    """The gateway may die between the cloud's 2xx and deleting the batch: it sends it again."""
    first = spooled.oldest_batch()
    assert first is not None
    headers = {"Content-Type": "application/vnd.fleetloop.batch+zlib",
               "X-Fleetloop-Gateway": GATEWAY, "X-Fleetloop-Signature": first.signature,
               "Authorization": "Bearer test-gateway-token"}
    assert httpx.post(cloud.url + "/api/v1/ingest", content=first.body,
                      headers=headers).status_code == 200
    up = _uplink(spooled, home, cloud.url)
    assert _drain(up, 4) == [Outcome.SENT] * 3 + [Outcome.EMPTY]
    assert cloud.seqs("bike-1") == list(range(1, 31)) and cloud.duplicate_records == 0


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(0.5, 8.0, random.Random(7))
    delays = [b.next() for _ in range(12)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert max(delays[6:]) <= 8.0 and min(delays[6:]) >= 4.0
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next() <= 0.5


def test_gateway_delivers_after_a_cloud_outage(
        home: Path, cloud: FakeCloud, run_gateway: Callable[..., RunningGateway],
        devices: Callable[..., Device]) -> None:
    cloud.mode = "500"
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike = devices(home, "bike-1", gw.port)
    for seq in range(1, 101):
        bike.send(seq)
    wait_for(lambda: bike.acked == 100, 10, "ack 100 while the cloud is down")
    wait_for(lambda: gw.status()["spool"]["records"] == 100, 10, "100 records spooled")
    assert gw.status()["uplink"]["last_error"].startswith("cloud error 500")
    assert not cloud.records
    cloud.mode = "ok"
    wait_for(lambda: len(cloud.records) == 100, 10, "delivered once the cloud is back")
    assert cloud.seqs("bike-1") == list(range(1, 101))
    wait_for(lambda: gw.status()["spool"]["batches"] == 0, 10, "spool empty")
