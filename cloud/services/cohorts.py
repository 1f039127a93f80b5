"""Cohorts: named groups of devices, by rule or by list, that profiles and rollouts target.

A rule is a small JSON object, not SQL: each key names a fact of a device and maps to one
value or a list of values (any of them matches); a device is a member when every key
matches. Keys (RULE_KEYS):
    product   the device's product            customer  the customer it belongs to
    hw_rev    its hardware revision           firmware  the `fw` its latest state reported
    gateway   its assigned gateway            consent   its effective consent tier
    {"product": "bike", "hw_rev": ["r2", "r3"]}   every r2 or r3 bike
A list cohort is {"devices": [id, ...]} (registered devices only, at most MAX_LIST).
Members are active devices only (decommissioned and revoked ones are in no cohort); a rule
is evaluated when asked, so a device whose facts change moves between cohorts by itself.

`priority` orders cohorts when several give the same setting (cloud.services.profiles).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloud.errors import InvalidRequest, NotFound, UnknownReference
from cloud.services import audit, registry
from cloud.services import consent as consent_service
from cloud.services.audit import Actor
from cloud.store import CohortRow, DeviceRow, RegistryRow, Store
from protocol.topics import valid_device_id

RULE = "rule"
LIST = "list"
RULE_KEYS = ("product", "customer", "hw_rev", "firmware", "gateway", "consent")
MAX_VALUES = 100
MAX_VALUE_CHARS = 64
MAX_LIST = 10000
MAX_PRIORITY = 1_000_000


@dataclass(frozen=True)
class Facts:
    """What a rule can ask of a device."""

    device: str
    active: bool
    values: dict[str, str | None]

    @staticmethod
    def of(device: DeviceRow, reg: RegistryRow | None) -> Facts:
        reported = device.reported or {}
        fw = reported.get("fw")
        return Facts(
            device=device.id,
            active=reg is None or reg.status == registry.ACTIVE,
            values={
                "product": device.product,
                "customer": None if reg is None else reg.customer,
                "hw_rev": None if reg is None else reg.hw_rev,
                "firmware": fw if isinstance(fw, str) else None,
                "gateway": device.gateway,
                "consent": consent_service.effective(device),
            },
        )


def fleet_facts(store: Store) -> list[Facts]:
    """Facts of every device (two reads of the device table)."""
    regs = {r.device: r for r in store.registries()}
    return [Facts.of(d, regs.get(d.id)) for d in store.list_devices()]


def check_rule(rule: Any) -> dict[str, list[str]]:
    """The rule in its stored form (every value a list); InvalidRequest says what is wrong."""
    if not isinstance(rule, dict) or not rule:
        raise InvalidRequest("a rule is a non-empty object of " + ", ".join(RULE_KEYS))
    out: dict[str, list[str]] = {}
    for key, value in rule.items():
        if key not in RULE_KEYS:
            raise InvalidRequest(f"unknown rule key {key!r}: use {', '.join(RULE_KEYS)}")
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > MAX_VALUES:
            raise InvalidRequest(f"rule key {key!r} needs 1..{MAX_VALUES} values")
        for v in values:
            if not isinstance(v, str) or not 1 <= len(v) <= MAX_VALUE_CHARS:
                raise InvalidRequest(
                    f"rule key {key!r}: values are strings of 1..{MAX_VALUE_CHARS} chars")
        out[key] = sorted(set(values))
    return out


def check_list(devices: Any) -> list[str]:
    if not isinstance(devices, list) or not 1 <= len(devices) <= MAX_LIST:
        raise InvalidRequest(f"a list cohort names 1..{MAX_LIST} device ids")
    bad = [d for d in devices if not valid_device_id(d)]
    if bad:
        raise InvalidRequest(f"not a device id: {str(bad[0])[:80]!r}")
    return sorted(set(devices))


def matches(spec: dict[str, Any], kind: str, facts: Facts) -> bool:
    if not facts.active:
        return False
    if kind == LIST:
        return facts.device in spec.get("devices", ())
    return all(facts.values.get(key) in values for key, values in spec.items())


def _shown(row: CohortRow | None) -> dict[str, Any] | None:
    return None if row is None else {"kind": row.kind, "spec": row.spec,
                                     "priority": row.priority}


def put(
    store: Store, caller: Actor, name: str, *, rule: Any = None, devices: Any = None,
    priority: int = 0, now_ms: int,
) -> tuple[CohortRow, bool]:
    """Create or replace a cohort; (row, created). Exactly one of rule and devices."""
    if (rule is None) == (devices is None):
        raise InvalidRequest("give either a rule or a list of devices")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidRequest(f"priority must be in -{MAX_PRIORITY}..{MAX_PRIORITY}")
    if rule is not None:
        kind, spec = RULE, check_rule(rule)
    else:
        kind, spec = LIST, {"devices": check_list(devices)}
    with store.transaction():
        if kind == LIST:
            missing = [d for d in spec["devices"] if store.get_device(d) is None]
            if missing:
                raise UnknownReference(f"device {missing[0]} not found"
                                       + (f" (and {len(missing) - 1} more)" if missing[1:] else ""))
        existing = store.get_cohort(name)
        row = CohortRow(name=name, kind=kind, spec=spec, priority=priority,
                        created_ms=now_ms if existing is None else existing.created_ms,
                        updated_ms=now_ms)
        store.save_cohort(row)
        if _shown(existing) != _shown(row):
            audit.record(store, caller, "cohort.put", f"cohort:{name}", now_ms,
                         before=_shown(existing), after=_shown(row))
    return row, existing is None


def get(store: Store, name: str) -> CohortRow:
    row = store.get_cohort(name)
    if row is None:
        raise NotFound(f"cohort {name} not found")
    return row


def delete(store: Store, caller: Actor, name: str, now_ms: int) -> CohortRow:
    with store.transaction():
        row = get(store, name)
        store.delete_cohort(name)
        audit.record(store, caller, "cohort.delete", f"cohort:{name}", now_ms,
                     before=_shown(row))
    return row


def members(store: Store, cohort: str | CohortRow, facts: Iterable[Facts] | None = None
            ) -> list[str]:
    """The ids of the cohort's (active) members, sorted. `facts`: the fleet's, when the
    caller already read them (cloud.services.profiles resolves many cohorts at once)."""
    row = get(store, cohort) if isinstance(cohort, str) else cohort
    if row.kind == LIST and facts is None:
        regs = [store.registry(d) for d in row.spec.get("devices", [])]
        return [r.device for r in regs if r is not None and r.status == registry.ACTIVE]
    pool = fleet_facts(store) if facts is None else facts
    return sorted(f.device for f in pool if matches(row.spec, row.kind, f))


def cohorts_of(cohorts: Iterable[CohortRow], facts: Facts) -> list[CohortRow]:
    """The cohorts the device is in, in the order their settings apply: lowest priority
    first, and among equal priorities by name, reversed (so the highest priority wins, then
    the name that sorts first)."""
    mine = [c for c in cohorts if matches(c.spec, c.kind, facts)]
    mine.sort(key=lambda c: c.name, reverse=True)
    mine.sort(key=lambda c: c.priority)
    return mine
