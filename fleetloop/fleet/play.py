"""Play the simulator's people straight into a cloud Store, in steps, each device under the
settings the cloud resolved for it: what a test or benchmark of the cloud's own decisions
needs (policies as experiments, churn) without the transport (the ingest path has its own
tests and benchmarks).

    player = Player(store, seed=3, products=[("bike", 60)], start_ms=..., end_ms=...)
    player.play_until(t1)        # every device under its settings as the cloud desires them
    ...create a policy: its treatment devices get a new desired config...
    player.play_until(t2)        # from here on the treatment devices ride under the change

Each device's settings for a step are its defaults (every name of protocol.config.SETTINGS)
overlaid with its latest desired config's settings as stored, read once when the step
begins: as if the device applied its new config at the start of the next step. Steps are the
resolution: a test that needs a config to land sooner plays shorter steps. The same
(seed, device) gives the same person (fleetloop.fleet.behaviour), so two runs that differ only
in the settings see the same dice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cloud.store import CustomerRow, DeviceRow, RegistryRow, Store
from fleetloop.fleet.behaviour import Behaviour, build
from fleetloop.fleet.truth import Truth

# The device's own defaults where the simulator plays it (sampling once a minute while in use:
# enough for rides and sessions, and a few thousand records per device over weeks).
DEFAULTS: dict[str, int] = {
    "interval_ms": 60_000, "ack_timeout_ms": 5000, "max_inflight": 8, "keepalive_s": 30,
    "heartbeat_s": 60, "coach_mode": 0, "target_power_w": 0, "programme": 0}
BATCH = 5000
GATEWAY = "sim"


@dataclass
class _Device:
    id: str
    behaviour: Behaviour
    t: int  # the next sampling time
    seq: int = 0


class Player:
    def __init__(self, store: Store, seed: int, products: Sequence[tuple[str, int]],
                 start_ms: int, end_ms: int, *, defaults: Mapping[str, int] | None = None,
                 customers: bool = True) -> None:
        """Register `count` devices per product (ids `<product>-<n>` from 1), each with a
        customer of its own when `customers`, and their people over [start_ms, end_ms]."""
        self.store = store
        self.truth = Truth(seed, start_ms, end_ms, 1.0)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.defaults = dict(DEFAULTS if defaults is None else defaults)
        self.devices: list[_Device] = []
        self.records = 0
        for product, count in products:
            for i in range(count):
                device = f"{product}-{i + 1}"
                behaviour = build(device, product, seed, start_ms, end_ms, self.truth)
                self._register(device, product, customers)
                self.devices.append(_Device(device, behaviour, start_ms))

    def _register(self, device: str, product: str, customers: bool) -> None:
        with self.store.transaction():
            self.store.insert_device(DeviceRow(id=device, product=product,
                                               created_ms=self.start_ms))
            customer = None
            if customers:
                customer = f"c-{device}"
                self.store.insert_customer(CustomerRow(id=customer, name=device,
                                                       created_ms=self.start_ms))
            self.store.set_registry(RegistryRow(device=device, product=product,
                                                customer=customer))

    def settings(self, device_id: str) -> dict[str, int]:
        """The device's settings now: defaults overlaid with its latest desired config."""
        latest = self.store.latest_config(device_id)
        return {**self.defaults, **({} if latest is None else latest.settings)}

    def play_until(self, until_ms: int) -> int:
        """Play every device up to until_ms (exclusive) under its current settings and store
        its records; returns how many were stored."""
        until_ms = min(until_ms, self.end_ms + 1)
        stored = 0
        newest: dict[str, tuple[int, dict[str, Any]]] = {}
        for d in self.devices:
            n, last = self._play(d, self.settings(d.id), until_ms)
            stored += n
            if last is not None:
                newest[d.id] = last
        # Every device's newest time moves in one transaction, after all the records are in:
        # a cloud judging on the record clock meanwhile never sees it pass a time whose
        # records are not all stored yet.
        with self.store.transaction():
            for d in self.devices:
                if d.id in newest:
                    row = self.store.get_device(d.id)
                    assert row is not None
                    t, metrics = newest[d.id]
                    self.store.save_device(replace(row, last_seq=d.seq, records=d.seq,
                                                   last_seen_ms=t, last_metrics=metrics))
        self.records += stored
        return stored

    def _play(self, d: _Device, settings: Mapping[str, int], until_ms: int
              ) -> tuple[int, tuple[int, dict[str, Any]] | None]:
        batch: list[tuple[str, int, int, int, dict[str, Any], str, int, None]] = []
        last: tuple[int, dict[str, Any]] | None = None
        stored = 0
        t = d.t
        while t < until_ms:
            metrics = d.behaviour.sample(t, settings)
            if metrics is None:
                t += d.behaviour.rest_ms(t, settings)
                continue
            d.seq += 1
            batch.append((d.id, 0, d.seq, t, dict(metrics), GATEWAY, 0, None))
            last = (t, dict(metrics))
            t += settings["interval_ms"]
            if len(batch) >= BATCH:
                stored += self._store(batch)
                batch = []
        d.t = t
        stored += self._store(batch)
        return stored, last

    def _store(self, batch: list[tuple[str, int, int, int, dict[str, Any], str, int, None]]
               ) -> int:
        if not batch:
            return 0
        with self.store.transaction():
            return self.store.insert_telemetry_values(batch)

    def advance_clock(self, at_ms: int) -> None:
        """Let every device report at_ms as its newest time (a heartbeat, no record): the
        record clock moves on even where nobody used the product lately."""
        with self.store.transaction():
            for d in self.devices:
                row = self.store.get_device(d.id)
                if row is not None and (row.last_seen_ms or 0) < at_ms:
                    self.store.save_device(replace(row, last_seen_ms=at_ms))
