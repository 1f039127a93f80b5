"""Policies as experiments: a condition on KPIs for a product's devices (all of them, a cohort
or a list) and a config change to try, run as a randomised experiment.

At creation the policy is checked (its KPIs are the product's own, cloud.loop.
experiment_kpis.catalogue; its change is checked like a profile's settings, cloud.services.
config.check_settings), then its participants are found and split:
- candidates: the product's devices in the cohort or list (all of them when neither is given);
- left out, each with its reason (`excluded`): a device out of service or of a cancelled
  customer (it gets no configs), one whose effective consent does not cover a KPI the policy
  reads (condition or outcome: it is never read for the experiment), one already in a running
  experiment (it would be in two at once and neither could be judged), and from a list a device
  of another product;
- participants: the other candidates for which every clause of the condition holds as of the
  record clock (the newest record time among the candidates);
- the split: the participants in id order, shuffled by a seeded random generator (the seed
  is stored, and given or drawn), the first `treatment_share` of them treatment, the rest
  control (at least one in each).
The change reaches the treatment devices through the signed config path: a running policy is
a layer of profile resolution for its treatment arm (cloud.services.profiles), so each
treatment device gets a new signed config version in the same transaction, and drift shows
it like any other desired change.

How a running policy is judged when its window ends is cloud.services.policy_judge.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cloud.errors import Conflict, NotFound, Refused
from cloud.loop import experiment_kpis as ek
from cloud.loop.activity import DAY_MS
from cloud.loop.experiment_stats import GOALS
from cloud.policy_store import EvaluationRow, PolicyDeviceRow, PolicyRow
from cloud.services import audit, cohorts, config, profiles, registry
from cloud.services.audit import Actor
from cloud.services.config import ConfigSigner
from cloud.store import DeviceRow, Store

RUNNING = "running"
KEPT = "kept"
REVERTED = "reverted"
STOPPED = "stopped"
STATES = (RUNNING, KEPT, REVERTED, STOPPED)
TREATMENT = "treatment"
CONTROL = "control"
EXCLUDED = "excluded"
MAX_SEED = 2**31 - 1
MIN_PARTICIPANTS = 2


@dataclass(frozen=True)
class Spec:
    """What ops ask for (the API checked shapes and ranges; the rest is checked here)."""

    name: str
    product: str
    change: dict[str, Any]
    outcome_kpi: str
    goal: str = "increase"
    condition: tuple[ek.Clause, ...] = ()
    cohort: str | None = None
    devices: tuple[str, ...] | None = None
    treatment_share: float = 0.5
    window_days: int = 14
    max_extensions: int = 2
    start_ms: int | None = None
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The request's fields as stored and shown (the contract's names)."""
        return {
            "name": self.name, "product": self.product, "cohort": self.cohort,
            "devices": None if self.devices is None else list(self.devices),
            "condition": [{"kpi": c.kpi, "op": c.op, "value": c.value} for c in self.condition],
            "change": dict(self.change),
            "outcome": {"kpi": self.outcome_kpi, "goal": self.goal},
            "treatment_share": self.treatment_share, "window_days": self.window_days,
            "max_extensions": self.max_extensions, "start_ms": self.start_ms,
        }

    def kpis(self) -> list[str]:
        """Every KPI the policy reads: the outcome's and the condition's."""
        return list(dict.fromkeys([self.outcome_kpi, *(c.kpi for c in self.condition)]))


@dataclass(frozen=True)
class View:
    """A policy as read: its row, arms and evaluations."""

    policy: PolicyRow
    treatment: list[str]
    control: list[str]
    excluded: list[PolicyDeviceRow]
    evaluations: list[EvaluationRow] = field(default_factory=list)


def window_ms(policy: PolicyRow) -> int:
    return int(policy.spec["window_days"]) * DAY_MS


def check(spec: Spec) -> None:
    """Refused (422) with every reason the policy cannot be what it says."""
    reasons: list[str] = []
    known = ek.catalogue(spec.product)
    if not known:
        reasons.append(f"unknown product {spec.product!r} (expected one of "
                       f"{', '.join(ek.PRODUCTS)})")
    for name in spec.kpis():
        if known and name not in known:
            other = [p for p in ek.PRODUCTS if p != spec.product and name in ek.catalogue(p)]
            where = f" (a KPI of {', '.join(other)})" if other else ""
            reasons.append(f"unknown KPI {name!r} for {spec.product}{where}; known: "
                           f"{', '.join(known)}")
    for c in spec.condition:
        if c.op not in ek.OPS:
            reasons.append(f"unknown op {c.op!r} (expected one of {', '.join(ek.OPS)})")
    if spec.goal not in GOALS:
        reasons.append(f"goal must be one of {', '.join(GOALS)}")
    if not spec.change:
        reasons.append("change must set at least one config key")
    else:
        try:
            config.check_settings(spec.change)
        except Exception as exc:  # InvalidSettings: the words protocol.config gives
            reasons.append(f"change: {exc}")
    if spec.cohort is not None and spec.devices is not None:
        reasons.append("give a cohort or a list of devices, not both")
    if not 0.1 <= spec.treatment_share <= 0.9:
        reasons.append("treatment_share must be in 0.1..0.9")
    if not 1 <= spec.window_days <= 365:
        reasons.append("window_days must be in 1..365")
    if not 0 <= spec.max_extensions <= 4:
        reasons.append("max_extensions must be in 0..4")
    if reasons:
        raise Refused(reasons)


def split(participants: Sequence[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(treatment, control): the ids in sorted order shuffled by `seed`, the first
    round(n * share) treatment (at least one, and at least one left for control)."""
    order = sorted(set(participants))
    random.Random(seed).shuffle(order)
    n = len(order)
    k = min(max(1, round(n * share)), n - 1)
    return sorted(order[:k]), sorted(order[k:])


@dataclass(frozen=True)
class Selection:
    participants: list[DeviceRow]
    excluded: list[PolicyDeviceRow]
    at_ms: int  # the record clock the condition was judged at


def _candidates(store: Store, spec: Spec) -> tuple[list[DeviceRow], list[tuple[str, str]]]:
    """(devices of the product in scope, [(device, reason)] of listed devices of another
    product). Refused for an unknown cohort or listed device."""
    left_out: list[tuple[str, str]] = []
    if spec.devices is not None:
        rows = {d: store.get_device(d) for d in spec.devices}
        missing = sorted(d for d, row in rows.items() if row is None)
        if missing:
            raise Refused([f"device {d} not found" for d in missing[:20]])
        devices = [r for r in rows.values() if r is not None]
        for r in devices:
            if r.product != spec.product:
                left_out.append((r.id, f"product {r.product}, not {spec.product}"))
        return sorted((r for r in devices if r.product == spec.product),
                      key=lambda r: r.id), left_out
    every = [d for d in store.list_devices() if d.product == spec.product]
    if spec.cohort is not None:
        if store.get_cohort(spec.cohort) is None:
            raise Refused([f"cohort {spec.cohort} not found"])
        members = set(cohorts.members(store, spec.cohort))
        every = [d for d in every if d.id in members]
    return sorted(every, key=lambda r: r.id), left_out


def select(store: Store, spec: Spec) -> Selection:
    """The participants and the devices left out (the module doc), read outside any
    transaction (the condition reads KPIs: many bounded queries)."""
    devices, left_out = _candidates(store, spec)
    excluded = [PolicyDeviceRow(0, d, EXCLUDED, why) for d, why in left_out]
    regs = {r.device: r for r in store.registries()}
    cancelled = {c.id for c in store.list_customers() if c.cancelled_ms is not None}
    busy = store.running_policy_of([d.id for d in devices])
    names = {p.id: p.name for p in store.running_policies()}
    infos = [ek.catalogue(spec.product)[name] for name in spec.kpis()]
    eligible: list[DeviceRow] = []
    for d in devices:
        reg = regs.get(d.id)
        why = ""
        if reg is not None and reg.status != registry.ACTIVE:
            why = f"{reg.status}: it gets no configs"
        elif reg is not None and reg.customer in cancelled:
            why = f"customer {reg.customer} cancelled: it gets no configs"
        else:
            short = [i for i in infos if not ek.permits(d, i)]
            if short:
                tier = max((i.tier for i in short), key=lambda t: ek.tiers.rank(t))
                why = f"needs consent tier {tier} ({', '.join(i.name for i in short)})"
            elif d.id in busy:
                why = f"in running policy {names.get(busy[d.id], busy[d.id])}"
        if why:
            excluded.append(PolicyDeviceRow(0, d.id, EXCLUDED, why))
        else:
            eligible.append(d)
    seen = [d.last_seen_ms for d in eligible if d.last_seen_ms is not None]
    at = spec.start_ms if spec.start_ms is not None else max(seen, default=0)
    clauses = list(spec.condition)
    participants = [d for d in eligible if ek.meets(store, d, clauses, at)]
    return Selection(participants, sorted(excluded, key=lambda r: r.device), at)


def create(store: Store, signer: ConfigSigner, caller: Actor, spec: Spec, now_ms: int
           ) -> View:
    """Check, select, split, store and deliver (the module doc). Refused (422) with the
    reasons; 503 (Unavailable) without the config-signing key."""
    check(spec)
    if store.policy_by_name(spec.name) is not None:
        raise Refused([f"name {spec.name} is in use"])
    chosen = select(store, spec)
    if len(chosen.participants) < MIN_PARTICIPANTS:
        counted = len(chosen.participants)
        raise Refused([f"{counted} device{'s' if counted != 1 else ''} meet the condition and"
                       f" may take part; an experiment needs at least {MIN_PARTICIPANTS}"
                       f" ({len(chosen.excluded)} left out)"])
    heard = [d.last_seen_ms for d in chosen.participants if d.last_seen_ms is not None]
    if spec.start_ms is None and not heard:
        # The record clock starts at the first record: without one the window would begin at
        # the epoch and be judged at once, on nothing.
        raise Refused([f"none of the {len(chosen.participants)} devices taking part has sent a"
                       " record yet: wait for their data or give start_ms"])
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(MAX_SEED)
    ids = [d.id for d in chosen.participants]
    treatment, control = split(ids, spec.treatment_share, seed)
    start = spec.start_ms if spec.start_ms is not None else max(heard)
    length = spec.window_days * DAY_MS
    with store.transaction():
        if store.policy_by_name(spec.name) is not None:  # created meanwhile
            raise Refused([f"name {spec.name} is in use"])
        busy = store.running_policy_of(ids)
        if busy:  # another experiment took some of them meanwhile
            raise Conflict(f"{len(busy)} of the participants joined another running policy"
                           " meanwhile; create it again")
        row = PolicyRow(id=0, name=spec.name, product=spec.product, spec=spec.as_dict(),
                        seed=seed, state=RUNNING, reason="", created_ms=now_ms,
                        created_by=caller.name, window_start_ms=start,
                        window_end_ms=start + length, extensions=0, updated_ms=now_ms)
        pid = store.insert_policy(row)
        row = replace(row, id=pid)
        store.insert_policy_devices(
            [PolicyDeviceRow(pid, d, TREATMENT) for d in treatment]
            + [PolicyDeviceRow(pid, d, CONTROL) for d in control]
            + [replace(e, policy=pid) for e in chosen.excluded])
        audit.record(store, caller, "policy.create", f"policy:{pid}", now_ms,
                     after={**row.spec, "seed": seed, "treatment": len(treatment),
                            "control": len(control), "excluded": len(chosen.excluded),
                            "window_start_ms": start, "window_end_ms": start + length})
        deliver(store, signer, treatment, now_ms)
    return view(store, pid)


def deliver(store: Store, signer: ConfigSigner, device_ids: Sequence[str], now_ms: int
            ) -> dict[str, int]:
    """Resolve these devices again (inside the caller's transaction): each whose settings
    changed gets a new signed config version."""
    wanted = set(device_ids)
    facts = [f for f in cohorts.fleet_facts(store) if f.device in wanted]
    return profiles.apply(store, signer, facts, now_ms)


def get(store: Store, policy_id: int) -> PolicyRow:
    row = store.get_policy(policy_id)
    if row is None:
        raise NotFound(f"policy {policy_id} not found")
    return row


def view(store: Store, policy_id: int) -> View:
    row = get(store, policy_id)
    devices = store.policy_devices(policy_id)
    return View(row, [d.device for d in devices if d.arm == TREATMENT],
                [d.device for d in devices if d.arm == CONTROL],
                [d for d in devices if d.arm == EXCLUDED], store.evaluations(policy_id))


def views(store: Store) -> list[View]:
    return [view(store, p.id) for p in store.list_policies()]


def stop(store: Store, signer: ConfigSigner, caller: Actor, policy_id: int, now_ms: int
         ) -> View:
    """Revert the change now (a running policy's treatment arm, or both arms of a kept one):
    state stopped. Conflict for a policy already reverted or stopped."""
    with store.transaction():
        row = get(store, policy_id)
        if row.state not in (RUNNING, KEPT):
            raise Conflict(f"policy {row.name} is {row.state}: nothing to stop")
        devices = store.policy_devices(policy_id)
        arms = (TREATMENT,) if row.state == RUNNING else (TREATMENT, CONTROL)
        new = replace(row, state=STOPPED, reason=f"stopped by {caller.name}", updated_ms=now_ms)
        store.save_policy_state(new)
        configs = deliver(store, signer, [d.device for d in devices if d.arm in arms], now_ms)
        audit.record(store, caller, "policy.stop", f"policy:{policy_id}", now_ms,
                     before={"state": row.state}, after={"state": STOPPED,
                                                         "configs": len(configs)})
    return view(store, policy_id)
