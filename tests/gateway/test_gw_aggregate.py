"""Aggregation per product at the gateway (gateway.aggregate), on a real gateway database:
windows agree with a naive recomputation, each is emitted once across a restart and across a
crash inside the batch's transaction, raw records stay local when the product says so, and no
aggregate carries what the device's consent does not allow."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest
from gwkit import GATEWAY, INCARNATION, record_key

from gateway.aggregate import Aggregator, Plan
from gateway.aggregate_policy import from_modes, parse
from gateway.batch import Batcher
from gateway.errors import SettingsError
from gateway.keys import GatewayKeys
from gateway.seqs import SeqTracker
from gateway.settings import Settings
from gateway.store import DeviceVitals, InboxRecord, Store, TrackerChange
from protocol import record as record_codec
from protocol import tag

T0 = 1_732_345_620_000  # a multiple of 60 s


class Site:
    """A gateway database with its batcher and aggregator, and a clock the test moves."""

    def __init__(self, home: Path, policy: str, grace_s: float = 5.0) -> None:
        self.home = home
        self.now = T0
        self.policy = policy
        self.grace_s = grace_s
        self.seqs: dict[str, SeqTracker] = {}
        self.open()

    def open(self, aggregator_cls: type[Aggregator] = Aggregator) -> None:
        self.store = Store(self.home / "gateways" / GATEWAY / "gateway.db")
        self.store.open()
        self.aggregator = aggregator_cls(self.store, parse(self.policy), self.grace_s)
        self.aggregator.open()
        self.batcher = Batcher(self.store, GATEWAY,
                               GatewayKeys.under(self.home, GATEWAY).load_batch_key(), 1000, 1.0,
                               clock_ms=lambda: self.now, aggregator=self.aggregator)

    def close(self) -> None:
        self.aggregator.close()
        self.store.close()

    def state(self, device: str, profile: str, consent: str | None = None) -> None:
        vitals = DeviceVitals(device, INCARNATION, self.now, self.now,
                              {"profile": profile, "consent": consent})
        self.store.commit_ingest([], [], [], [vitals])

    def send(self, device: str, seq: int, t: int, metrics: dict[str, Any]) -> bytes:
        payload = record_codec.encode(device, INCARNATION, seq, t, metrics,
                                      tag.Hmac(record_key(self.home, device)))
        self._commit(device, seq, payload)
        return payload

    def consent(self, device: str, seq: int, t: int, tier: str) -> None:
        payload = record_codec.encode_consent(device, INCARNATION, seq, t, tier, "device", 0,
                                              tag.Hmac(record_key(self.home, device)))
        self._commit(device, seq, payload)

    def _commit(self, device: str, seq: int, payload: bytes) -> None:
        before = self.seqs.get(device, SeqTracker())
        after = before.copy()
        after.accept(seq)
        self.seqs[device] = after
        self.store.commit_ingest([InboxRecord(device, seq, payload, self.now)], [],
                                 [TrackerChange((device, INCARNATION), before, after, 1, self.now)])

    def batches(self) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.store.path)
        try:
            return [json.loads(zlib.decompress(body)) for (body,) in
                    db.execute("SELECT body FROM spool WHERE kind = 'batch' ORDER BY seq")]
        finally:
            db.close()

    def aggregates(self) -> list[dict[str, Any]]:
        return [a for b in self.batches() for a in b.get("aggregates", [])]

    def raw_seqs(self, device: str) -> list[int]:
        return [json.loads(r)["s"] for b in self.batches() for r in b["records"]
                if json.loads(r)["d"] == device]

    def local_seqs(self, device: str) -> list[int]:
        db = sqlite3.connect(self.store.path)
        try:
            return [s for (s,) in db.execute(
                "SELECT seq FROM agg_local_raw WHERE device = ? ORDER BY id", (device,))]
        finally:
            db.close()


def naive(metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({k for m in metrics for k in m}):
        xs = [m[name] for m in metrics if name in m]
        out[name] = {"n": len(xs), "min": min(xs), "max": max(xs),
                     "mean": pytest.approx(sum(xs) / len(xs)), "last": xs[-1]}
    return out


@pytest.fixture
def site(home: Path) -> Any:
    s = Site(home, "bike=60,mirror=60:local,engine=raw")
    yield s
    s.close()


def test_windowed_local_and_raw_products_each_get_what_their_policy_says(site: Site) -> None:
    site.state("bike-1", "bike")
    site.state("mirror-1", "mirror")
    site.state("engine-1", "engine")
    bike = [{"power": 200 + 7 * i % 90, "cadence": 80 + i % 5} for i in range(10)]
    for i, m in enumerate(bike):
        site.send("bike-1", i + 1, T0 + i * 5000, m)  # 0..45 s: one window
        site.send("mirror-1", i + 1, T0 + i * 5000, {"reps": i})
        site.send("engine-1", i + 1, T0 + i * 5000, {"t24": 640.0 + i})
    site.batcher.flush()
    assert site.aggregates() == []  # the windows are still open
    site.send("bike-1", 11, T0 + 61_000, {"power": 1})  # the bike's clock moved on
    site.batcher.flush()
    (first,) = site.aggregates()
    assert first["d"] == "bike-1" and first["start"] == T0 and first["n"] == 10
    assert (first["first_seq"], first["last_seq"], first["raw"]) == (1, 10, "sent")
    assert first["m"] == naive(bike)
    site.now += 70_000 + 5_000  # past length + grace for the rest
    site.batcher.flush()
    by_device = {(a["d"], a["start"]): a for a in site.aggregates()}
    assert by_device[("mirror-1", T0)]["raw"] == "local"
    assert by_device[("mirror-1", T0)]["m"]["reps"]["n"] == 10
    assert by_device[("bike-1", T0 + 60_000)]["n"] == 1
    assert not any(d == "engine-1" for d, _ in by_device)
    assert site.raw_seqs("bike-1") == list(range(1, 12))  # next to, never instead of
    assert site.raw_seqs("mirror-1") == [] and site.local_seqs("mirror-1") == list(range(1, 11))
    assert site.raw_seqs("engine-1") == list(range(1, 11))
    assert site.aggregator.status()["local_records"] == 10


def test_a_window_survives_a_restart_and_is_emitted_once(site: Site, home: Path) -> None:
    site.state("bike-1", "bike")
    metrics = [{"power": p} for p in (10, 250, 30, 40.5, 5, 600, 7)]
    for i, m in enumerate(metrics[:4]):
        site.send("bike-1", i + 1, T0 + i * 1000, m)
    site.batcher.flush()
    site.close()  # the gateway stops mid-window (its open window is on disk)
    site.open()
    for i, m in enumerate(metrics[4:], start=4):
        site.send("bike-1", i + 1, T0 + i * 1000, m)
    site.batcher.flush()
    site.now += 120_000
    site.batcher.flush()
    site.batcher.flush()
    (only,) = site.aggregates()
    assert only["n"] == 7 and only["m"] == naive(metrics)


class CrashingAggregator(Aggregator):
    """Dies inside the batch's transaction after writing its part (a kill at the worst
    moment): the whole transaction must roll back."""

    def write(self, db: sqlite3.Connection, plan: Plan, now_ms: int) -> None:
        super().write(db, plan, now_ms)
        raise KeyboardInterrupt("killed")


def test_a_crash_inside_the_batch_transaction_neither_loses_nor_double_counts(
        site: Site) -> None:
    site.state("bike-1", "bike")
    metrics = [{"power": p} for p in (1, 2, 3, 4, 5, 6)]
    for i, m in enumerate(metrics[:3]):
        site.send("bike-1", i + 1, T0 + i * 1000, m)
    site.batcher.flush()
    site.close()
    site.open(CrashingAggregator)
    for i, m in enumerate(metrics[3:], start=3):
        site.send("bike-1", i + 1, T0 + i * 1000, m)
    with pytest.raises(KeyboardInterrupt):
        site.batcher.flush()
    site.close()
    site.open()  # the restart after the crash
    site.now += 120_000
    site.batcher.flush()
    (only,) = site.aggregates()
    assert only["n"] == 6 and only["m"] == naive(metrics)
    assert site.raw_seqs("bike-1") == [1, 2, 3, 4, 5, 6]


class FailingOnceAggregator(Aggregator):
    """A write that fails once (say, the disk was full): the batcher's worker runs the same
    objects again, so the failed plan must have left the windows in memory untouched."""

    writes = 0

    def write(self, db: sqlite3.Connection, plan: Plan, now_ms: int) -> None:
        super().write(db, plan, now_ms)
        self.writes += 1
        if self.writes == 2:  # the window exists: the failed plan folded into it
            raise sqlite3.OperationalError("database or disk is full")


def test_a_failed_batch_transaction_leaves_the_windows_in_memory_as_they_were(
        site: Site) -> None:
    site.close()
    site.open(FailingOnceAggregator)
    site.state("bike-1", "bike")
    metrics = [{"power": p} for p in (5, 1, 9, 3)]
    site.send("bike-1", 1, T0, metrics[0])
    site.send("bike-1", 2, T0 + 1000, metrics[1])
    site.batcher.flush()  # the window holds 1, 2
    site.send("bike-1", 3, T0 + 2000, metrics[2])
    site.send("bike-1", 4, T0 + 3000, metrics[3])
    with pytest.raises(sqlite3.OperationalError):
        site.batcher.flush()  # folds 3, 4 into it ... and rolls back
    site.batcher.flush()  # the same process, the same aggregator: 3, 4 folded once
    site.now += 120_000
    site.batcher.flush()
    (only,) = site.aggregates()
    assert only["n"] == 4 and only["m"] == naive(metrics)


def test_an_aggregate_never_carries_what_consent_does_not_allow(site: Site) -> None:
    site.state("bike-1", "bike", consent="personal")
    site.send("bike-1", 1, T0, {"power": 200, "heart_rate": 150})
    site.send("bike-1", 2, T0 + 1000, {"power": 210, "heart_rate": 155})
    site.batcher.flush()  # the window holds heart rates ...
    site.consent("bike-1", 3, T0 + 2000, "usage")  # ... until the customer narrows
    site.send("bike-1", 4, T0 + 3000, {"power": 220})
    site.now += 120_000
    site.batcher.flush()
    (only,) = site.aggregates()
    assert set(only["m"]) == {"power"} and only["m"]["power"]["n"] == 3
    assert only["n"] == 3  # the consent record is no reading: it is forwarded, not folded
    assert 3 in site.raw_seqs("bike-1")  # the consent trail always goes up


def test_the_state_tier_screens_an_aggregate_too(site: Site) -> None:
    site.state("bike-1", "bike", consent="usage")  # say, the consent record is still on its way
    site.send("bike-1", 1, T0, {"power": 200, "heart_rate": 150})
    site.batcher.flush()
    site.now += 120_000
    site.batcher.flush()
    (only,) = site.aggregates()
    assert set(only["m"]) == {"power"}


def test_the_clouds_policy_is_kept_across_a_restart_and_a_setting_overrides_it(
        home: Path) -> None:
    store = Store(home / "gateways" / GATEWAY / "gateway.db")
    store.open()
    follows = Aggregator(store, None)
    follows.open()
    assert follows.policy == parse("") and follows.source == "cloud"
    assert follows.set_cloud_policy(from_modes({"bike": "60", "mirror": "300:local"}))
    assert not follows.set_cloud_policy(from_modes({"mirror": "300:local", "bike": "60"}))
    follows.close()
    again = Aggregator(store, None)
    again.open()  # a restart with the cloud unreachable: the last policy it was told
    assert again.policy.describe() == {"bike": "60", "mirror": "300:local"}
    again.close()
    site_override = Aggregator(store, parse("raw"))
    site_override.open()
    assert not site_override.set_cloud_policy(from_modes({"bike": "5"}))
    assert site_override.policy.describe() == {} and site_override.source == "setting"
    site_override.close()
    store.close()


def test_the_settings_take_the_policy_or_leave_it_to_the_cloud(home: Path) -> None:
    assert Settings.build(env={}, home=home).aggregate_policy is None
    built = Settings.build(env={"FLEETLOOP_AGGREGATE": "bike=60"}, home=home)
    assert built.aggregate_policy == parse("bike=60")
    with pytest.raises(SettingsError, match="bike=0"):
        Settings.build(env={"FLEETLOOP_AGGREGATE": "bike=0"}, home=home)


@pytest.mark.parametrize("text, words", [
    ("bike=0", "window"), ("bike=60:remote", "suffix"), ("bike", "product=raw"),
    ("bike=60,bike=raw", "twice"), ("Bike=60", "product=raw"), ("bike=soon", "use raw"),
])
def test_a_bad_policy_is_refused_with_its_reason(text: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        parse(text)
