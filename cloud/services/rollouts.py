"""Rollouts: a bundle offered to a product's devices in staged waves, created and steered by
ops (pause, resume, abort); how it moves on by itself is cloud.services.progress.

Targets are the bundle's product's devices in a cohort or a list, active in the registry.
Left out, each with its reason (never offered): devices already on the bundle's version or a
newer one, below its min_version, for a delta those not on its base version, and devices
still in another rollout (not aborted, their word not final). That last rule keeps a device
in at most one offering rollout, so a gateway never sees two offers for one device; to hand
devices to a newer rollout, abort the older one first (its final words stay).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cloud.errors import Conflict, NotFound, Refused
from cloud.rollout_store import BundleRow, RolloutDeviceRow, RolloutRow, WaveRow
from cloud.services import audit, bundles, cohorts, progress, registry, waves
from cloud.services.audit import Actor
from cloud.services.progress import ABORTED, AUTO_PAUSED, COMPLETED, PAUSED, RUNNING
from cloud.store import DeviceRow, Store
from protocol import ota

ID_PATTERN = r"^r-[1-9][0-9]{0,17}$"
_ID = re.compile(ID_PATTERN)
MAX_DEVICES = cohorts.MAX_LIST


@dataclass(frozen=True)
class Spec:
    """What ops ask for (the API checked shapes and ranges)."""

    bundle: str
    cohort: str | None = None
    devices: tuple[str, ...] | None = None
    waves: tuple[float, ...] = waves.DEFAULT_WAVES
    soak_s: int = 3600
    failure_threshold: float = 0.1
    deadline_s: int = 3600
    heap_ratio: float = 0.8


@dataclass(frozen=True)
class View:
    """A rollout as read: its row, waves and devices, after evaluation."""

    rollout: RolloutRow
    waves: list[WaveRow]
    devices: list[RolloutDeviceRow] = field(default_factory=list)

    def counts(self, wave: int | None = None) -> dict[str, int]:
        """Devices by word (of one wave, or all)."""
        out: dict[str, int] = {}
        for d in self.devices:
            if wave is None or d.wave == wave:
                out[d.word] = out.get(d.word, 0) + 1
        return out


def number(rollout_id: str) -> int:
    """n of "r-<n>"; NotFound for anything else."""
    if not _ID.match(rollout_id):
        raise NotFound(f"rollout {rollout_id[:40]} not found")
    return int(rollout_id[2:])


def _version(text: object) -> tuple[int, ...] | None:
    try:
        return tuple(ota.parse_version(text))
    except ValueError:
        return None


def skip_reason(bundle: BundleRow, device: DeviceRow) -> str | None:
    """Why a device of the bundle's product is left out by its version (None: a target).
    A device that never reported its firmware is a target (it decides itself)."""
    fw = (device.reported or {}).get("fw")
    have = _version(fw)
    if have is not None and have >= (_version(bundle.version) or ()):
        return f"already on {fw}"
    if bundle.base is not None and fw != bundle.base:
        return (f"on {fw if have is not None else 'an unknown version'},"
                f" the delta is for {bundle.base}")
    if have is not None and have < (_version(bundle.min_version) or ()):
        return f"on {fw}, below the bundle's min_version {bundle.min_version}"
    return None


def _candidates(store: Store, spec: Spec, bundle: BundleRow) -> tuple[list[str], list[list[str]]]:
    """(devices to consider, [device, reason] left out), or Refused."""
    if spec.cohort is not None:
        row = store.get_cohort(spec.cohort)
        if row is None:
            raise Refused([f"cohort {spec.cohort} not found"])
        return cohorts.members(store, row), []
    listed = sorted(set(spec.devices or ()))
    missing = [d for d in listed if store.get_device(d) is None]
    if missing:
        raise Refused([f"device {d} not found" for d in missing[:20]]
                      + ([f"and {len(missing) - 20} more"] if len(missing) > 20 else []))
    out, skipped = [], []
    for d in listed:
        reg = store.registry(d)
        if reg is not None and reg.status != registry.ACTIVE:
            skipped.append([d, reg.status])
        else:
            out.append(d)
    return out, skipped


def create(store: Store, caller: Actor, spec: Spec, now_ms: int) -> RolloutRow:
    """Plan and start a rollout (wave 1 starts now); Refused with every reason it cannot."""
    problems = waves.check(spec.waves)
    if (spec.cohort is None) == (spec.devices is None):
        problems.append("give either a cohort or a list of devices")
    if problems:
        raise Refused(problems)
    with store.transaction():
        bundle = store.get_bundle(spec.bundle) if bundles.valid_key(spec.bundle) else None
        if bundle is None:
            raise Refused([f"bundle {spec.bundle} not found (upload it first)"])
        names, skipped = _candidates(store, spec, bundle)
        known = {d.id: d for d in store.list_devices()}  # one read, not one per device
        targets = _targets(store, bundle, names, known, skipped, listed=spec.devices is not None)
        if not targets:
            raise Refused(["no device to update"] + [f"{d}: {r}" for d, r in skipped[:20]])
        row = RolloutRow(
            n=0, bundle=bundle.key, product=bundle.product, version=bundle.version,
            offer_id=bundle.offer_id,
            target={"cohort": spec.cohort} if spec.cohort is not None
            else {"devices": sorted(set(spec.devices or ()))},
            waves=list(spec.waves), soak_s=spec.soak_s, failure_threshold=spec.failure_threshold,
            deadline_s=spec.deadline_s, heap_ratio=spec.heap_ratio, state=RUNNING, reason="",
            accepted={}, skipped=skipped, created_ms=now_ms, created_by=caller.name,
            updated_ms=now_ms)
        n = store.insert_rollout(row)
        row = RolloutRow(**{**row.__dict__, "n": n})
        _plan(store, row, [(d, _firmware(known[d])) for d in targets], now_ms)
        audit.record(store, caller, "rollout.create", f"rollout:{row.id}", now_ms, after={
            "bundle": bundle.key, "target": row.target, "waves": row.waves, "devices":
            len(targets), "skipped": len(skipped), "soak_s": row.soak_s,
            "failure_threshold": row.failure_threshold, "deadline_s": row.deadline_s,
            "heap_ratio": row.heap_ratio})
    return row


def _targets(store: Store, bundle: BundleRow, names: Sequence[str],
             known: Mapping[str, DeviceRow], skipped: list[list[str]], *, listed: bool
             ) -> list[str]:
    """The devices to offer the bundle to; what is left out goes to `skipped`. Devices of
    other products are left out silently from a cohort, with a reason from a list."""
    held = {r.device: r for r in store.held_devices(names)}
    out = []
    for name in names:
        device = known.get(name)
        if device is None:
            continue
        if device.product != bundle.product:
            if listed:
                skipped.append([name, f"a {device.product or 'device of unknown product'},"
                                      f" the bundle is for {bundle.product}"])
            continue
        other = held.get(name)
        reason = (f"in rollout r-{other.rollout} ({other.word})" if other is not None
                  else skip_reason(bundle, device))
        if reason is None:
            out.append(name)
        else:
            skipped.append([name, reason])
    return out


def _plan(store: Store, rollout: RolloutRow, targets: Sequence[tuple[str, str | None]],
          now_ms: int) -> None:
    """Waves and device rows; targets: (device, the firmware it last reported)."""
    firmware = dict(targets)
    ordered = waves.order(rollout.id, firmware)
    plan = waves.sizes(len(ordered), rollout.waves)
    store.insert_waves([WaveRow(rollout.n, k, p, size, now_ms if k == 1 else None)
                        for k, (p, size) in enumerate(plan, 1)])
    rows, at = [], 0
    for k, (_, size) in enumerate(plan, 1):
        for device in ordered[at:at + size]:
            rows.append(RolloutDeviceRow(rollout=rollout.n, device=device, wave=k, position=at,
                                         word=ota.PENDING, since_ms=now_ms,
                                         version=firmware[device]))
            at += 1
    store.insert_rollout_devices(rows)


def _firmware(device: DeviceRow) -> str | None:
    fw = (device.reported or {}).get("fw")
    return fw if isinstance(fw, str) else None


def _advanced(store: Store, rollout_id: str, now_ms: int
              ) -> tuple[RolloutRow, list[RolloutDeviceRow]]:
    """The rollout moved on, and its devices afterwards (inside the caller's transaction);
    NotFound."""
    n = number(rollout_id)
    rollout = store.get_rollout(n)
    if rollout is None:
        raise NotFound(f"rollout {rollout_id} not found")
    rollout = progress.advance(store, rollout, now_ms)
    return rollout, store.rollout_devices(n)


def view(store: Store, rollout_id: str, now_ms: int) -> View:
    """The rollout after evaluation, with its waves and devices; NotFound."""
    with store.transaction():
        rollout, devices = _advanced(store, rollout_id, now_ms)
        return View(rollout, store.waves(rollout.n), devices)


def views(store: Store, now_ms: int) -> list[View]:
    """Every rollout, newest first, after evaluation."""
    progress.evaluate(store, now_ms)
    return [View(r, store.waves(r.n), store.rollout_devices(r.n))
            for r in store.list_rollouts()]


# By hand: from which states each control may be used.
CONTROLS = {
    "pause": ((RUNNING,), PAUSED),
    "resume": ((PAUSED, AUTO_PAUSED), RUNNING),
    "abort": ((RUNNING, PAUSED, AUTO_PAUSED, COMPLETED), ABORTED),
}
DONE = {"pause": "paused", "resume": "resumed", "abort": "aborted"}


def control(store: Store, caller: Actor, rollout_id: str, action: str, now_ms: int) -> View:
    """Pause, resume or abort by hand (audited); Conflict from a state it does not apply to.
    Resuming an auto-paused rollout accepts the failures that paused it (they do not pause
    it again; new ones do) and the audit entry says so."""
    sources, state = CONTROLS[action]
    with store.transaction():
        rollout, devices = _advanced(store, rollout_id, now_ms)
        if rollout.state not in sources:
            raise Conflict(f"rollout {rollout_id} is {rollout.state}: it cannot {action}"
                           f" (only when {' or '.join(sources)})")
        accepted = None
        reason = f"{DONE[action]} by {caller.name}"
        if action == "resume" and rollout.state == AUTO_PAUSED:
            accepted = {str(k): v for k, v in progress.failures(devices).items()}
            reason = f"resumed by {caller.name} after an auto-pause ({rollout.reason})"
        rollout = progress.set_state(store, caller, rollout, state, f"rollout.{action}", now_ms,
                                     reason, accepted)
        if state == RUNNING:
            rollout = progress.advance(store, rollout, now_ms)
        return View(rollout, store.waves(rollout.n), store.rollout_devices(rollout.n))
