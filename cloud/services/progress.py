"""A rollout moving on: its devices judged (cloud.services.device_words), its waves started,
auto-paused or completed. Evaluated by the cloud's own clock (cloud.ticker runs `evaluate`
every tick), whenever a rollout is read and whenever a state ingest touches a rollout's
device; a gateway taking its offers does not (its pull stays a read unless it has devices to
mark offered). Tests that drive time by hand call `evaluate` or read the rollout. Every
evaluation runs inside a transaction (the store's single writer: SQLite's BEGIN IMMEDIATE,
PostgreSQL's advisory lock), so several workers evaluating at once take turns and each sees
what the one before wrote: a wave starts once, an auto-pause is audited once.

Whatever may change a gateway's offers moves the store's offers stamp in the same transaction
(the gateways' long-poll waits on it): the store does it for waves and rollout states, and
this module for a device word that enters or leaves the offered set (`offered`) and for a
device of a rollout assigned to a gateway (`on_assigned`).

The rules, for a rollout that is not aborted:
- a wave's failure rate is (failure + rolled_back) / its size; above failure_threshold a
  running rollout becomes auto_paused with the reason ("wave 1: 2 of 5 failed (40% > 10%)"),
  audited as done by the system. Failures ops accepted when they resumed it do not count
  again (cloud.services.waves.crossed);
- the next wave starts when the current one is at least soak_s old, every device in it that
  started (past offered) is final, and its threshold is not crossed; devices still pending
  or offered carry on (they install when they come back). The rollout is completed when its
  last wave meets the same rule; its stragglers are still offered and judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cloud.rollout_store import RolloutDeviceRow, RolloutRow, WaveRow
from cloud.services import audit, device_words, waves
from cloud.store import Store
from protocol import ota

RUNNING = "running"
PAUSED = "paused"
AUTO_PAUSED = "auto_paused"
ABORTED = "aborted"
COMPLETED = "completed"
STATES = (RUNNING, PAUSED, AUTO_PAUSED, ABORTED, COMPLETED)
FAILED = (ota.FAILURE, ota.ROLLED_BACK)


@dataclass(frozen=True)
class System:
    """The cloud itself, as the actor of what it decides (an auto-pause) in the audit log."""

    name: str = "system"
    role: str = "system"
    token_id: int | None = None


SYSTEM = System()


_OFFERABLE = (*device_words.WAITING, *device_words.STARTED)


def offered(word: str, state: str) -> bool:
    """Whether a device with this word, in a started wave of a rollout in this state, is
    offered its update (cloud.services.offers): from pending to rebooting, and while the
    rollout is paused only once it started (a device mid-update keeps its offer)."""
    if state == ABORTED or word not in _OFFERABLE:
        return False
    return state not in (PAUSED, AUTO_PAUSED) or word in device_words.STARTED


def target(rollout: RolloutRow) -> device_words.Target:
    return device_words.Target(rollout.offer_id, rollout.version, rollout.soak_s * 1000,
                               rollout.deadline_s * 1000, rollout.heap_ratio)


def failures(devices: Iterable[RolloutDeviceRow]) -> dict[int, int]:
    """wave -> devices of it that failed or rolled back."""
    out: dict[int, int] = {}
    for d in devices:
        if d.word in FAILED:
            out[d.wave] = out.get(d.wave, 0) + 1
    return out


def evaluate(store: Store, now_ms: int) -> None:
    """Move every rollout with something to judge on (its own transaction). The cloud's ticker
    calls this every second: with nothing open it reads once and never takes the writer lock,
    which ingest waits on."""
    if not store.open_rollouts():
        return
    with store.transaction():
        advance_all(store, now_ms)


def advance_all(store: Store, now_ms: int) -> None:
    """evaluate() inside the caller's transaction."""
    for rollout in store.open_rollouts():
        advance(store, rollout, now_ms)


def advance(store: Store, rollout: RolloutRow, now_ms: int) -> RolloutRow:
    """Judge the rollout's devices and move its waves; call inside a transaction."""
    if rollout.state == ABORTED:
        return rollout
    rows = store.rollout_devices(rollout.n)
    plan = store.waves(rollout.n)
    started = {w.wave for w in plan if w.started_ms is not None}
    aim = target(rollout)
    changed = []
    for i, row in enumerate(rows):
        if row.wave in started and row.word not in ota.FINAL:
            new = device_words.judged(row, aim, now_ms, lambda d, t: _flowing(store, d, t))
            if new != row:
                rows[i] = new
                changed.append((row, new))
    store.save_rollout_devices([new for _, new in changed])
    if any(offered(old.word, rollout.state) != offered(new.word, rollout.state)
           for old, new in changed):
        store.touch_offers()
    return _waves(store, rollout, plan, rows, now_ms)


def _waves(store: Store, rollout: RolloutRow, plan: list[WaveRow],
           rows: Sequence[RolloutDeviceRow], now_ms: int) -> RolloutRow:
    if rollout.state != RUNNING:
        return rollout
    failed = failures(rows)
    for w in plan:
        n = failed.get(w.wave, 0)
        if w.started_ms is not None and waves.crossed(
                n, w.size, rollout.failure_threshold, rollout.accepted.get(str(w.wave), 0)):
            return set_state(store, SYSTEM, rollout, AUTO_PAUSED, "rollout.auto_pause", now_ms,
                             waves.describe(w.wave, n, w.size, rollout.failure_threshold))
    soak_ms = rollout.soak_s * 1000
    while True:
        started = [w for w in plan if w.started_ms is not None]
        if not started:  # wave 1 starts with the rollout: never here
            return rollout
        current = max(started, key=lambda w: w.wave)
        if now_ms < (current.started_ms or 0) + soak_ms or any(
                r.wave == current.wave and r.word not in device_words.WAITING
                and r.word not in ota.FINAL for r in rows):
            return rollout
        following = [w for w in plan if w.wave == current.wave + 1]
        if not following:
            return set_state(store, SYSTEM, rollout, COMPLETED, "rollout.complete", now_ms,
                             f"every wave done ({len(plan)})")
        store.start_wave(rollout.n, following[0].wave, now_ms)
        plan = [replace(w, started_ms=now_ms) if w.wave == following[0].wave else w
                for w in plan]


def set_state(store: Store, who: audit.Actor, rollout: RolloutRow, state: str, action: str,
              now_ms: int, reason: str, accepted: Mapping[str, int] | None = None
              ) -> RolloutRow:
    """Write the rollout's new state and its audit entry (inside the caller's transaction)."""
    new = replace(rollout, state=state, reason=reason, updated_ms=now_ms,
                  accepted=dict(rollout.accepted if accepted is None else accepted))
    store.save_rollout_state(new)
    after: dict[str, Any] = {"state": state, "reason": reason}
    if accepted:
        after["accepted"] = dict(accepted)
    audit.record(store, who, action, f"rollout:{rollout.id}", now_ms,
                 before={"state": rollout.state}, after=after)
    return new


def on_states(store: Store, states: Mapping[str, Sequence[dict[str, Any]]],
              now_ms: int) -> None:
    """The ingest's hook (inside its transaction): the verified states of these devices
    arrived; update their rollout rows, and move the rollouts where a word changed."""
    held = store.held_devices(list(states))
    if not held:
        return
    rollouts: dict[int, RolloutRow] = {}
    changed: list[RolloutDeviceRow] = []
    moved: set[int] = set()
    words: list[tuple[str, RolloutDeviceRow, RolloutDeviceRow]] = []
    for row in held:
        rollout = rollouts.get(row.rollout) or store.get_rollout(row.rollout)
        if rollout is None:
            continue
        rollouts[row.rollout] = rollout
        new = device_words.heard(row, target(rollout), states[row.device], now_ms)
        # A waiting device's rows change only for its words and firmware: no write per
        # heartbeat for every device of a big rollout that has not started.
        if new.word != row.word or new.version != row.version or (
                new != row and row.word not in device_words.WAITING):
            changed.append(new)
        if new.word != row.word:
            moved.add(row.rollout)
            words.append((rollout.state, row, new))
    store.save_rollout_devices(changed)
    if any(offered(old.word, state) != offered(new.word, state) for state, old, new in words):
        store.touch_offers()
    for n in sorted(moved):
        advance(store, rollouts[n], now_ms)


def on_assigned(store: Store, device_ids: Sequence[str]) -> None:
    """These devices were just assigned to a gateway (inside the caller's transaction): when
    a rollout holds one of them, its offer moves to that gateway, so the offers stamp moves."""
    if device_ids and store.held_devices(device_ids):
        store.touch_offers()


def _flowing(store: Store, device_id: str, t: int) -> bool:
    """Records flow from `device_id` since its device time t: one was stored after t, or its
    latest state after t says nothing waits in its buffer (an idle product, or one whose
    owner shares no telemetry, has nothing to send and is not stuck)."""
    if store.has_records_after(device_id, t):
        return True
    latest = store.heartbeats(device_id, 1)
    return bool(latest) and latest[0].t > t and latest[0].body.get("buffered") == 0
