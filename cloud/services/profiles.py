"""Config profiles: desired settings per product, per cohort and per device, resolved into one
signed config per device (cloud.services.config), and the drift between desired and reported.

Precedence, key by key: device > policy > cohort > product. A device's settings are its
product's profile, overlaid by the profiles of the cohorts it is in (lowest priority first;
among equal priorities the name that sorts first wins: cloud.services.cohorts.cohorts_of),
overlaid by the changes of the policies in force for it (cloud.services.policies: a running
experiment's treatment arm, both arms of a kept one; the newer policy wins), overlaid by its
own profile, so a technician's per-device pin still wins over an experiment. A key nothing
sets is left out (the device keeps its own default). A policy that ends (reverted, stopped)
simply stops being a layer: its devices are resolved again and get a new config version
without its change; nobody's profile is touched.

Every change is a new version of the profile (history kept, the newest active); a rollback
is a new version with an earlier version's settings. After a change, in the same transaction,
every device it concerns is resolved again, and gets a new config version only when its
resolved settings differ from its latest desired ones. Devices that get no proposals: those
decommissioned or revoked, and those of a cancelled customer (cloud.services.customers).
A device whose profiles set nothing gets no config from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloud.errors import InvalidRequest, NotFound
from cloud.services import audit
from cloud.services import cohorts as cohort_service
from cloud.services import config as config_service
from cloud.services.audit import Actor
from cloud.services.cohorts import Facts
from cloud.services.config import ConfigSigner
from cloud.store import CohortRow, ProfileRow, Store

PRODUCT = "product"
COHORT = "cohort"
DEVICE = "device"
KINDS = (PRODUCT, COHORT, DEVICE)


@dataclass(frozen=True)
class Change:
    """A profile version and the config versions it produced."""

    profile: ProfileRow
    configs: dict[str, int]  # device -> new config version


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidRequest(f"profile kind must be one of {', '.join(KINDS)}")
    return kind


def history(store: Store, kind: str, scope: str) -> list[ProfileRow]:
    """Every version, newest first; NotFound when the profile has none."""
    rows = store.profiles(check_kind(kind), scope)
    if not rows:
        raise NotFound(f"no {kind} profile for {scope}")
    return rows


def put(
    store: Store, signer: ConfigSigner, kind: str, scope: str, settings: Any, caller: Actor,
    now_ms: int,
) -> Change:
    """A new version of the profile with `settings` (checked against protocol.config's bounds,
    InvalidSettings), then its devices resolved and signed. NotFound for a cohort or device
    that does not exist."""
    check_kind(kind)
    settings = config_service.check_settings(settings)
    with store.transaction():
        if kind == COHORT and store.get_cohort(scope) is None:
            raise NotFound(f"cohort {scope} not found")
        if kind == DEVICE and store.get_device(scope) is None:
            raise NotFound(f"device {scope} not found")
        return _new_version(store, signer, kind, scope, settings, caller, caller.name, now_ms,
                            "profile.put")


def rollback(
    store: Store, signer: ConfigSigner, kind: str, scope: str, version: int, caller: Actor,
    now_ms: int,
) -> Change:
    """A new version with the settings of `version`; NotFound when there is no such one."""
    check_kind(kind)
    with store.transaction():
        old = [p for p in store.profiles(kind, scope) if p.version == version]
        if not old:
            raise NotFound(f"{kind} profile {scope} has no version {version}")
        return _new_version(store, signer, kind, scope, dict(old[0].settings), caller,
                            f"{caller.name} (rollback to {version})", now_ms,
                            "profile.rollback")


def _new_version(
    store: Store, signer: ConfigSigner, kind: str, scope: str, settings: dict[str, Any],
    caller: Actor, by: str, now_ms: int, action: str,
) -> Change:
    latest = store.profiles(kind, scope)
    row = ProfileRow(kind=kind, scope=scope, version=(latest[0].version + 1) if latest else 1,
                     settings=settings, created_ms=now_ms, created_by=by)
    store.insert_profile(row)
    audit.record(store, caller, action, f"profile:{kind}/{scope}", now_ms,
                 before=None if not latest else {"version": latest[0].version,
                                                 "settings": latest[0].settings},
                 after={"version": row.version, "settings": settings})
    facts = cohort_service.fleet_facts(store)
    if kind == DEVICE:
        concerned = [f for f in facts if f.device == scope]
    elif kind == PRODUCT:
        concerned = [f for f in facts if f.values["product"] == scope]
    else:
        cohort = cohort_service.get(store, scope)
        concerned = [f for f in facts if cohort_service.matches(cohort.spec, cohort.kind, f)]
    return Change(row, apply(store, signer, concerned, now_ms))


def apply(
    store: Store, signer: ConfigSigner, devices: Iterable[Facts], now_ms: int
) -> dict[str, int]:
    """Resolve each device and sign a new config where its settings changed (inside the
    caller's transaction); device -> new config version."""
    active = _active(store)
    cohorts = store.list_cohorts()
    cancelled = {c.id for c in store.list_customers() if c.cancelled_ms is not None}
    devices = list(devices)
    layers = policy_layers(store, [f.device for f in devices])
    out: dict[str, int] = {}
    for facts in devices:
        if not facts.active or facts.values["customer"] in cancelled:
            continue
        settings = resolve_with(active, cohorts, facts, layers.get(facts.device))
        latest = store.latest_config(facts.device)
        current = {} if latest is None else latest.settings
        if settings == current or (latest is None and not settings):
            continue
        row = config_service.insert_desired(store, signer, facts.device, settings, now_ms)
        out[facts.device] = row.version
    return out


def _active(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p.kind, p.scope): p.settings for p in store.active_profiles()}


def policy_layers(store: Store, device_ids: list[str] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """device -> the settings the policies in force give it (older policies first, so the
    newer one's keys win)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in store.policy_layers(device_ids):
        out.setdefault(layer.device, {}).update(layer.change)
    return out


def resolve_with(
    active: dict[tuple[str, str], dict[str, Any]], cohorts: list[CohortRow], facts: Facts,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    product = facts.values["product"]
    out: dict[str, Any] = {}
    if product is not None:
        out.update(active.get((PRODUCT, product), {}))
    for cohort in cohort_service.cohorts_of(cohorts, facts):
        out.update(active.get((COHORT, cohort.name), {}))
    out.update(policy or {})
    out.update(active.get((DEVICE, facts.device), {}))
    return out


def resolve(store: Store, device_id: str) -> dict[str, Any]:
    """The device's settings as its profiles give them now."""
    device = store.get_device(device_id)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    facts = Facts.of(device, store.registry(device_id))
    return resolve_with(_active(store), store.list_cohorts(), facts,
                        policy_layers(store, [device_id]).get(device_id))
