"""Per-product windows at the gateway: fold committed records into windows, emit each closed
window once as an aggregate record (protocol.aggregate) inside the next signed batch.

Exactly once across a kill -9: the batcher calls `plan` with the inbox rows it is about to
batch, then, in the one transaction that spools the batch and deletes those rows from the
inbox, `write` (the windows the rows changed, the windows emitted, the raw records kept
locally). A crash before that commit leaves the rows in the inbox and the windows as they were
(the rows are folded again, once, after the restart); after it, the rows are gone and their
effect is in `agg_windows`. An emitted window is deleted in the transaction that spools the
batch carrying it: never emitted twice, never lost. `commit` then updates the in-memory copy;
the batcher is the only writer of these tables.

Tables (in the gateway's database, created here: they are this module's alone)
    agg_windows    open windows: per (device, incarnation, start, window length) the records
                   folded so far (n, seq range, per-metric count/min/max/mean/last as JSON)
    agg_tiers      per device, the consent tier of its newest consent record seen here
    agg_local_raw  raw records of `N:local` products, kept at the gateway (pruned by age)
    agg_policy     the cloud's policy as last fetched (gateway.aggregate_feed): product -> mode

A window closes when its device's clock has moved to a later window, or `grace_s` after its
own length has passed since it was opened (gateway clock, so a device whose clock is off
still gets its windows closed), or when the product's policy no longer matches it.

Consent: an aggregate carries no metric the device's consent does not allow upstream. The
tier is the narrower of the device's newest consent record folded here and the `consent` of
its latest state (the gateway's device_vitals); a narrowing drops the metrics above it from
the device's open windows at once (the cloud does the same to everything it holds), and
every window is screened again when it is emitted. A device that never reported a tier
(firmware from before consent) is aggregated as sent, like the cloud stores its records.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.aggregate_policy import Policy, from_modes
from gateway.errors import SettingsError
from gateway.store import Store
from protocol import aggregate as aggregate_codec
from protocol import consent as tiers
from protocol.aggregate import Aggregate, Stat, window_start
from protocol.record import is_consent

log = logging.getLogger("fleetloop.gateway.aggregate")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agg_windows (
    device TEXT NOT NULL,
    incarnation INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    window_s INTEGER NOT NULL,
    product TEXT NOT NULL,
    raw TEXT NOT NULL,
    opened_ms INTEGER NOT NULL,
    n INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (device, incarnation, start_ms, window_s)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_tiers (
    device TEXT PRIMARY KEY,
    tier TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_local_raw (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS agg_local_raw_received ON agg_local_raw (received_ms);
CREATE TABLE IF NOT EXISTS agg_policy (
    product TEXT PRIMARY KEY,
    mode TEXT NOT NULL
) WITHOUT ROWID;
"""

Key = tuple[str, int, int, int]  # (device, incarnation, start_ms, window_s)
_IN_CHUNK = 500
_PRUNE_EVERY_MS = 60_000


@dataclass
class Window:
    """One open window. Mutable: a plan folds into its own copy (`copy`), and the copy becomes
    the current window only once the batch transaction committed."""

    device: str
    incarnation: int
    start_ms: int
    window_s: int
    product: str
    raw: str
    opened_ms: int  # gateway clock when its first record was folded
    n: int
    first_seq: int
    last_seq: int
    metrics: dict[str, Stat]

    @property
    def key(self) -> Key:
        return (self.device, self.incarnation, self.start_ms, self.window_s)

    def copy(self) -> Window:
        return replace(self, metrics={k: s.copy() for k, s in self.metrics.items()})

    def add(self, seq: int, metrics: dict[str, Any]) -> None:
        self.n += 1
        if seq < self.first_seq:
            self.first_seq = seq
        if seq > self.last_seq:
            self.last_seq = seq
        aggregate_codec.add_metrics(self.metrics, metrics)

    def keep_only(self, allowed: Callable[[str], bool]) -> Window:
        return replace(self, metrics={k: v.copy() for k, v in self.metrics.items()
                                      if allowed(k)})

    def aggregate(self) -> Aggregate:
        return Aggregate(self.device, self.incarnation, self.product, self.start_ms,
                         self.window_s, self.n, self.first_seq, self.last_seq, self.raw,
                         dict(self.metrics))


@dataclass
class Plan:
    """What one batch does to the windows; `write` stores it, `commit` makes it current."""

    send: list[bytes]  # raw records that go in the batch, in inbox order
    aggregates: list[dict[str, Any]] = field(default_factory=list)  # protocol.aggregate objects
    local: list[tuple[str, int, bytes, int]] = field(default_factory=list)  # kept here
    upserts: dict[Key, Window] = field(default_factory=dict)
    deletes: set[Key] = field(default_factory=set)
    tiers: dict[str, str] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return bool(self.upserts or self.deletes or self.local or self.tiers)


@dataclass(frozen=True)
class DeviceFacts:
    product: str | None
    tier: str | None  # from the device's latest state


def _allowed(product: str, tier: str | None) -> Callable[[str], bool]:
    if tier is None:
        return lambda name: True  # never reported a tier: as sent (firmware before consent)
    names = frozenset(tiers.allowed(product, tier))
    return names.__contains__


def _narrower(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a if b is None else b
    return tiers.narrower(a, b)


class Aggregator:
    """Windows per the policy; `plan` runs in the batcher's thread, outside any transaction."""

    def __init__(self, store: Store, policy: Policy | None, grace_s: float = 10.0,
                 local_days: float = 30.0) -> None:
        """`policy`: the gateway's own setting, which wins over the cloud's; None: follow the
        cloud's (gateway.aggregate_feed), stored here as last fetched."""
        self._store = store
        self._setting = policy
        self._policy = policy or Policy()
        self._grace_ms = int(grace_s * 1000)
        self._keep_ms = int(local_days * 86_400_000)
        self._windows: dict[Key, Window] = {}
        self._tiers: dict[str, str] = {}
        self._read: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # guards the counters (read by the status thread)
        self._pruned_ms = 0
        self._allowed: dict[tuple[str, str | None], Callable[[str], bool]] = {}
        self.emitted = 0
        self.kept_local = 0

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def source(self) -> str:
        """Where the policy in use comes from: `setting` (the gateway's own) or `cloud`."""
        return "setting" if self._setting is not None else "cloud"

    def set_cloud_policy(self, policy: Policy) -> bool:
        """Store and use the cloud's policy (ignored while a setting is in force); True when
        it changed what this gateway does. Windows opened under another policy close at the
        next batch."""
        if self._setting is not None or policy == self._policy:
            return False
        with self._store.transaction() as db:
            db.execute("DELETE FROM agg_policy")
            db.executemany("INSERT INTO agg_policy (product, mode) VALUES (?, ?)",
                           list(policy.describe().items()))
        self._policy = policy  # one reference: the batcher's next plan reads it whole
        log.info("aggregation policy from the cloud: %s", policy.describe() or "every product raw")
        return True

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        """Create this module's tables and load the open windows (call after Store.open)."""
        with self._store.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            rows = db.execute(
                "SELECT device, incarnation, start_ms, window_s, product, raw, opened_ms, n,"
                " first_seq, last_seq, metrics FROM agg_windows").fetchall()
            self._tiers = dict(db.execute("SELECT device, tier FROM agg_tiers").fetchall())
            cloud = dict(db.execute("SELECT product, mode FROM agg_policy").fetchall())
        if self._setting is None:
            try:
                self._policy = from_modes(cloud)
            except SettingsError:  # stored by an older version: the next fetch replaces it
                log.warning("stored aggregation policy refused; every product raw until the "
                            "cloud answers")
        self._windows = {}
        for r in rows:
            metrics = {k: Stat.from_obj(v) for k, v in json.loads(r[10]).items()}
            w = Window(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], metrics)
            self._windows[w.key] = w
        self._read = sqlite3.connect(self._store.path, check_same_thread=False)
        if self._windows:
            log.info("%d open windows restored", len(self._windows))

    def close(self) -> None:
        if self._read is not None:
            self._read.close()
            self._read = None

    # -- planning ------------------------------------------------------------------------
    def plan(self, rows: list[tuple[int, bytes]], now_ms: int, room: int) -> Plan:
        """Fold `rows` (inbox id, record bytes) and pick up to `room` closed windows."""
        if not self._policy.windowed and not self._windows:
            return Plan([bytes(p) for _, p in rows])  # nothing summarised: no decoding at all
        records = [json.loads(p) for _, p in rows]
        facts = self._facts({r["d"] for r in records})
        plan = Plan([])
        work: dict[Key, Window] = {}  # windows changed by this plan

        def current(key: Key) -> Window | None:
            return work[key] if key in work else self._windows.get(key)

        def mine(key: Key) -> Window | None:
            """The plan's own copy of a window (the committed one stays as it is)."""
            w = work.get(key)
            if w is None and key in self._windows:
                w = work[key] = self._windows[key].copy()
            return w

        for (_, payload), rec in zip(rows, records, strict=True):
            device = rec["d"]
            if is_consent(rec):
                plan.send.append(bytes(payload))  # the consent trail always goes up whole
                plan.tiers[device] = rec["c"]["tier"]
                self._narrow(device, rec["c"]["tier"], work, current)
                continue
            fact = facts.get(device, DeviceFacts(None, None))
            product = fact.product
            policy = self._policy.of(product)
            if product is None or policy.window_s is None:
                plan.send.append(bytes(payload))
                continue
            if policy.raw_local:
                plan.local.append((device, rec["s"], bytes(payload), now_ms))
            else:
                plan.send.append(bytes(payload))
            tier = _narrower(plan.tiers.get(device, self._tiers.get(device)), fact.tier)
            keep = self._keep(product, tier)
            metrics = {k: v for k, v in rec.get("m", {}).items() if keep(k)}
            inc = rec.get("i", 0)
            key = (device, inc, window_start(rec["t"], policy.window_s), policy.window_s)
            w = mine(key)
            if w is None:
                w = work[key] = Window(device, inc, key[2], policy.window_s, product,
                                       aggregate_codec.RAW_LOCAL if policy.raw_local
                                       else aggregate_codec.RAW_SENT,
                                       now_ms, 0, rec["s"], rec["s"], {})
            w.add(rec["s"], metrics)
        plan.upserts = work
        self._emit(plan, facts, now_ms, room, current)
        return plan

    def _keep(self, product: str, tier: str | None) -> Callable[[str], bool]:
        """_allowed, remembered per (product, tier): it is asked once per record."""
        keep = self._allowed.get((product, tier))
        if keep is None:
            keep = self._allowed[(product, tier)] = _allowed(product, tier)
        return keep

    def _narrow(self, device: str, tier: str, work: dict[Key, Window],
                current: Callable[[Key], Window | None]) -> None:
        """Drop what `tier` does not allow from the device's open windows."""
        keys = {k for k in (*self._windows, *work) if k[0] == device}
        for key in keys:
            w = current(key)
            if w is not None:
                work[key] = w.keep_only(_allowed(w.product, tier))

    def _emit(self, plan: Plan, facts: dict[str, DeviceFacts], now_ms: int, room: int,
              current: Callable[[Key], Window | None]) -> None:
        every = {k: w for k in {*self._windows, *plan.upserts} if (w := current(k)) is not None}
        newest: dict[tuple[str, int], int] = {}
        for (device, inc, start, _), _w in every.items():
            newest[(device, inc)] = max(start, newest.get((device, inc), start))
        due = sorted((w for w in every.values() if self._due(w, newest, now_ms)),
                     key=lambda w: (w.start_ms, w.key))[:max(0, room)]
        facts = {**facts, **self._facts({w.device for w in due} - set(facts))}
        for w in due:
            fact = facts.get(w.device)
            tier = _narrower(plan.tiers.get(w.device, self._tiers.get(w.device)),
                             fact.tier if fact else None)
            plan.aggregates.append(w.keep_only(_allowed(w.product, tier)).aggregate().to_obj())
            plan.upserts.pop(w.key, None)
            plan.deletes.add(w.key)

    def _due(self, w: Window, newest: dict[tuple[str, int], int], now_ms: int) -> bool:
        if newest[(w.device, w.incarnation)] > w.start_ms:
            return True  # the device's clock moved on to a later window
        if now_ms >= w.opened_ms + w.window_s * 1000 + self._grace_ms:
            return True
        policy = self._policy.of(w.product)
        return policy.window_s != w.window_s or (
            aggregate_codec.RAW_LOCAL if policy.raw_local else aggregate_codec.RAW_SENT) != w.raw

    def _facts(self, devices: Iterable[str]) -> dict[str, DeviceFacts]:
        """Product and consent tier of each device, from its latest state (device_vitals)."""
        db = self._read
        if db is None:
            raise RuntimeError("Aggregator.open was not called")
        ids = sorted(devices)
        out: dict[str, DeviceFacts] = {}
        for n in range(0, len(ids), _IN_CHUNK):
            chunk = ids[n:n + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for device, product, tier in db.execute(
                    f"SELECT device, profile, consent FROM device_vitals WHERE device IN ({marks})",
                    chunk):
                out[device] = DeviceFacts(product or None, tier or None)
        return out

    # -- the batcher's transaction -------------------------------------------------------
    def write(self, db: sqlite3.Connection, plan: Plan, now_ms: int) -> None:
        """Store `plan` inside the caller's transaction (the one that spools its batch)."""
        if plan.deletes:
            db.executemany("DELETE FROM agg_windows WHERE device = ? AND incarnation = ? AND"
                           " start_ms = ? AND window_s = ?", list(plan.deletes))
        if plan.upserts:
            db.executemany(
                "INSERT OR REPLACE INTO agg_windows (device, incarnation, start_ms, window_s,"
                " product, raw, opened_ms, n, first_seq, last_seq, metrics)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*w.key, w.product, w.raw, w.opened_ms, w.n, w.first_seq, w.last_seq,
                  json.dumps({k: s.to_obj() for k, s in w.metrics.items()}))
                 for w in plan.upserts.values()])
        if plan.tiers:
            db.executemany("INSERT OR REPLACE INTO agg_tiers (device, tier) VALUES (?, ?)",
                           list(plan.tiers.items()))
        if plan.local:
            db.executemany("INSERT INTO agg_local_raw (device, seq, payload, received_ms)"
                           " VALUES (?, ?, ?, ?)", plan.local)
        if now_ms - self._pruned_ms >= _PRUNE_EVERY_MS:
            db.execute("DELETE FROM agg_local_raw WHERE received_ms < ?",
                       (now_ms - self._keep_ms,))
            self._pruned_ms = now_ms

    def commit(self, plan: Plan) -> None:
        """After the transaction of `write` committed: make the plan the current state."""
        for key in plan.deletes:
            self._windows.pop(key, None)
        self._windows.update(plan.upserts)
        self._tiers.update(plan.tiers)
        with self._lock:
            self.emitted += len(plan.aggregates)
            self.kept_local += len(plan.local)

    # -- status --------------------------------------------------------------------------
    def local_records(self) -> int:
        """Raw records kept at the gateway now (products whose raw records stay local)."""
        db = sqlite3.connect(self._store.path)
        try:
            return int(db.execute("SELECT count(*) FROM agg_local_raw").fetchone()[0])
        except sqlite3.OperationalError:
            return 0  # not created yet
        finally:
            db.close()

    def status(self) -> dict[str, Any]:
        with self._lock:
            emitted, kept = self.emitted, self.kept_local
        return {"policy": self._policy.describe(), "source": self.source,
                "open_windows": len(self._windows),
                "emitted": emitted, "kept_local": kept, "local_records": self.local_records()}
