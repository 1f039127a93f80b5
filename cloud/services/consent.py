"""Consent the customer controls (protocol.consent): what the cloud may keep of a device's data.

Two sources, one rule:
- the device's word: its newest consent record (the tier in effect on the product from that
  record on; `devices.consent_tier`). A consent record is judged like any record (its tag,
  its identity) and stored in the device's telemetry, in its stream. "Newest" is by place
  in the stream (the arrival order of its incarnation, then seq): a record older than the
  one the cloud holds that arrives late changes nothing. None: the device never sent one
  (firmware from before consent): its data is stored as sent;
- the customer's account: a narrowing requested in the cloud (`consent_cap`, PUT
  .../consent), carried to the device by the config version it created
  (`consent_cap_version`) and by every later one while the cap holds (services/config.py).
  The cap holds until a consent record of the device shows it has seen that version
  (c.cfg >= consent_cap_version: applied it, or refused it while restating a narrower tier); from then on the device's word is the
  truth again, including a later widening by the customer on the product.
The effective tier is the narrower of the two (either may be missing; both missing: None,
unrestricted). Whenever it narrows, every metric it does not allow is removed from all of the
device's stored rows and from its last values; every change of it is written to
`consent_audit` (a widening with no rows). Metric records are stored without the metrics the
effective tier does not allow, whenever they arrive (a record sampled before an opt-out may
arrive long after it): those removals are audited once per batch, as "late arrival".

What a tier allows: for a product of protocol.consent.METRIC_TIERS, its allowed() names; for
a device whose product is unknown, a name that every product naming it allows at that tier
(a name no product names is never kept); at essential nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from cloud.errors import Conflict, NotFound
from cloud.services import config as config_service
from cloud.services.config import ConfigSigner
from cloud.store import ConsentAuditRow, DeviceRow, Store
from protocol import consent as tiers
from protocol.record import incarnation as incarnation_of

WIDEN = "consent can only be widened by the customer, on the product"
LATE = "late arrival"
ADMIN = "admin token"
MAX_AUDIT = 1000


def effective(device: DeviceRow) -> str | None:
    """The narrower of the device's reported tier and the cloud's cap; None: neither."""
    if device.consent_tier is None:
        return device.consent_cap
    if device.consent_cap is None:
        return device.consent_tier
    return str(tiers.narrower(device.consent_tier, device.consent_cap))


def screened(device: DeviceRow) -> bool:
    """The device is under consent: its stored metrics may be fewer than it sent."""
    return device.consent_tier is not None or device.consent_cap is not None


def _narrows(before: str | None, after: str | None) -> bool:
    if after is None:
        return False
    return before is None or tiers.rank(after) < tiers.rank(before)


def allowed(product: str | None, tier: str) -> frozenset[str]:
    """The metric names a device of `product` keeps at `tier`."""
    if product in tiers.METRIC_TIERS:
        return frozenset(tiers.allowed(product, tier))
    limit = tiers.rank(tier)
    named: dict[str, bool] = {}
    for table in tiers.METRIC_TIERS.values():
        for name, lowest in table.items():
            named[name] = named.get(name, True) and tiers.rank(lowest) <= limit
    return frozenset(name for name, ok in named.items() if ok)


@dataclass(frozen=True)
class Screen:
    """The metrics a device keeps now; None: everything (no consent known)."""

    names: frozenset[str] | None

    @staticmethod
    def of(device: DeviceRow) -> Screen:
        tier = effective(device)
        return Screen(None if tier is None else allowed(device.product, tier))

    def apply(self, metrics: dict[str, Any]) -> dict[str, Any]:
        if self.names is None:
            return metrics
        names = self.names
        return {name: value for name, value in metrics.items() if name in names}

    def removed(self, metrics: dict[str, Any]) -> tuple[dict[str, Any], set[str]] | None:
        """(what is kept, the names removed) when the screen removes anything; else None."""
        kept = self.apply(metrics)
        if len(kept) == len(metrics):
            return None
        return kept, {name for name in metrics if name not in kept}


def _origin(device: DeviceRow) -> str:
    """Who set the limit in force: the cloud when its cap is the narrower, else the device."""
    cap, tier = device.consent_cap, device.consent_tier
    if cap is not None and (tier is None or tiers.rank(cap) < tiers.rank(tier)):
        return "cloud"
    return "device"


def _purge(store: Store, device: DeviceRow) -> tuple[DeviceRow, list[str], int]:
    """Remove what the device's effective tier does not allow from all its stored metric rows
    and its last values: (device, names removed, rows changed)."""
    screen = Screen.of(device)
    removed: set[str] = set()
    updates: list[tuple[int, int, dict[str, Any]]] = []
    for row in store.metric_rows(device.id):
        cut = screen.removed(row.m)
        if cut is not None:
            removed |= cut[1]
            updates.append((row.incarnation, row.seq, cut[0]))
    store.set_metrics(device.id, updates)
    cut_aggregates, changed = _purge_aggregates(store, device.id, screen)
    removed |= cut_aggregates
    rows = len(updates) + changed
    last = screen.removed(device.last_metrics)
    if last is None:
        return device, sorted(removed), rows
    return replace(device, last_metrics=last[0]), sorted(removed | last[1]), rows


def _purge_aggregates(store: Store, device_id: str, screen: Screen) -> tuple[set[str], int]:
    """The same for the gateways' aggregates of the device (cloud.services.aggregates): (names
    removed, aggregates changed)."""
    removed: set[str] = set()
    updates: list[tuple[int, int, int, dict[str, Any]]] = []
    for row in store.aggregate_metric_rows(device_id):
        cut = screen.removed(row.m)
        if cut is not None:
            removed |= cut[1]
            updates.append((row.incarnation, row.start_ms, row.first_seq, cut[0]))
    store.set_aggregate_metrics(device_id, updates)
    return removed, len(updates)


def _changed(
    store: Store, device: DeviceRow, before: str | None, origin: str, requested_by: str,
    now_ms: int,
) -> DeviceRow:
    """Audit a change of the effective tier from `before`; purge when it narrowed."""
    after = effective(device)
    if after is None or after == before:
        return device
    fields: list[str] = []
    rows = 0
    if _narrows(before, after):
        device, fields, rows = _purge(store, device)
    store.insert_consent_audit(ConsentAuditRow(
        device=device.id, at_ms=now_ms, origin=origin, requested_by=requested_by,
        from_tier=before, to_tier=after, fields=fields, rows=rows,
    ))
    return device


def apply_records(
    store: Store, device: DeviceRow, records: Sequence[dict[str, Any]], order: dict[int, int],
    now_ms: int,
) -> DeviceRow:
    """Take the device's new (checked, verified, not stored before) consent records, in
    stream order; `order`: incarnation -> its place in the device's order. Call inside the
    ingest transaction, before its metric records are stored. Returns the device (not saved)."""

    def place(inc: int | None, seq: int | None) -> tuple[int, int]:
        if inc is None or seq is None:
            return (-2, 0)
        return order.get(inc, -1), seq

    for rec in sorted(records, key=lambda r: place(incarnation_of(r), r["s"])):
        inc, seq = incarnation_of(rec), rec["s"]
        if place(inc, seq) <= place(device.consent_incarnation, device.consent_seq):
            continue  # an older consent record, late: the newer one stands
        c = rec["c"]
        before = effective(device)
        device = replace(device, consent_tier=c["tier"], consent_incarnation=inc,
                         consent_seq=seq)
        if device.consent_cap_version is not None and c["cfg"] >= device.consent_cap_version:
            device = replace(device, consent_cap=None, consent_cap_version=None)
        device = _changed(store, device, before, c["origin"],
                          f"device consent record {inc}/{seq}", now_ms)
    return device


@dataclass(frozen=True)
class Screened:
    """A batch's metric records of one device as stored, and what consent removed."""

    records: list[dict[str, Any]]
    fields: list[str]
    rows: int


def screen_records(device: DeviceRow, records: Sequence[dict[str, Any]]) -> Screened:
    """The records with the metrics the device's effective tier does not allow removed."""
    screen = Screen.of(device)
    if screen.names is None:  # no consent known: everything is kept
        return Screened(list(records), [], 0)
    out: list[dict[str, Any]] = []
    removed: set[str] = set()
    rows = 0
    for rec in records:
        cut = screen.removed(rec["m"])
        if cut is not None:
            removed |= cut[1]
            rows += 1
            rec = {**rec, "m": cut[0]}
        out.append(rec)
    return Screened(out, sorted(removed), rows)


def audit_late(store: Store, device: DeviceRow, screened: Screened, now_ms: int) -> None:
    """One audit row for the metrics removed from a batch's records (when any were)."""
    tier = effective(device)
    if not screened.rows or tier is None:
        return
    store.insert_consent_audit(ConsentAuditRow(
        device=device.id, at_ms=now_ms, origin=_origin(device), requested_by=LATE,
        from_tier=tier, to_tier=tier, fields=screened.fields, rows=screened.rows,
    ))


def narrow(
    store: Store, signer: ConfigSigner, device_id: str, tier: str, now_ms: int,
    requested_by: str = ADMIN,
) -> DeviceRow:
    """The customer's account narrows the device's consent to `tier`, in one transaction: a
    new config version carrying the latest desired settings and `consent`, the cap, the
    purge and its audit row. Equal to the effective tier: nothing is done. NotFound for an
    unknown device; Conflict when `tier` is wider than the effective tier."""
    tiers.rank(tier)  # ValueError for an unknown tier: the API refuses it before this
    with store.transaction():
        device = store.get_device(device_id)
        if device is None:
            raise NotFound(f"device {device_id} not found")
        before = effective(device)
        if before is not None and tiers.rank(tier) > tiers.rank(before):
            raise Conflict(WIDEN)
        if tier == before:
            return device
        latest = store.latest_config(device_id)
        settings = {} if latest is None else dict(latest.settings)
        row = config_service.insert_desired(store, signer, device_id, settings, now_ms,
                                            consent=tier)
        device = replace(device, consent_cap=tier, consent_cap_version=row.version)
        device = _changed(store, device, before, "cloud", requested_by, now_ms)
        store.save_device(device)
    return device


def audit(store: Store, device_id: str, limit: int = MAX_AUDIT) -> list[ConsentAuditRow]:
    """The device's consent history, newest first."""
    return store.consent_audit(device_id, max(1, min(limit, MAX_AUDIT)))
