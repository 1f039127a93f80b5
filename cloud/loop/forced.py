"""When a pushed setting, not the person, set the effort or the habit: the periods a policy's
change to a ride's target power or programme (effort), or to coach mode (coached), was in
force on a device.

A bike under a target power holds that power (as far as the rider can): a ride's mean power
then tells the setting, not how hard the rider chooses to ride, and when the change is
reverted the power falls back to the rider's own. Read as the rider's effort, that fall looks
like a leaver's (the loop's proof: riders of the reverted "target power 900 W" policy were
listed for power that fell from their limit to their usual). The churn model's effort signal
leaves out the rides made in these periods (cloud.loop.churn.evidence's `forced`).

The periods come from the policies (record time: a policy's window is on record time): its
treatment from the window's start, to the window's end and a margin when it was reverted (the
revert reaches a device a little after the decision), else on; its control, once the change
was kept, from the window's end on. A stopped policy's arms are taken as under the change from
then on (the stop's moment is on the cloud's clock, not record time: more rides left out of the
effort signal rather than fewer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.loop.activity import DAY_MS
from cloud.policy_store import PolicyDeviceRow, PolicyRow
from cloud.store import Store

# The settings that set a ride's effort (protocol.config: bike settings)
EFFORT_SETTINGS = ("target_power_w", "programme")
COACH_SETTING = "coach_mode"  # on (1): the coaching a responder rides more under
MARGIN_MS = 2 * DAY_MS  # after a reverted window's end: the revert on its way to the device
FOREVER = 2**62

Span = tuple[int, int]  # (from_ms, to_ms)
Periods = dict[str, list[Span]]  # device -> [(from_ms, to_ms)]
Policies = Iterable[tuple[PolicyRow, Sequence[PolicyDeviceRow]]]


@dataclass(frozen=True)
class Changes:
    """One device's periods under a policy's change: to its effort settings, to coach mode on."""

    effort: tuple[Span, ...] = ()
    coached: tuple[Span, ...] = ()


NONE = Changes()


def periods(policies: Policies) -> Periods:
    """Each device's periods under a change to an effort setting, from policies and arms."""
    return _periods(policies, lambda change: any(name in change for name in EFFORT_SETTINGS))


def coaching(policies: Policies) -> Periods:
    """Each device's periods under a change that turned coach mode on."""
    return _periods(policies, lambda change: bool(change.get(COACH_SETTING)))


def _periods(policies: Policies, applies: Callable[[dict[str, Any]], bool]) -> Periods:
    out: Periods = {}
    for row, devices in policies:
        change = row.spec.get("change") or {}
        if not applies(change):
            continue
        treated = (row.window_start_ms, row.window_end_ms + MARGIN_MS
                   if row.state == "reverted" else FOREVER)
        controlled = (row.window_end_ms, FOREVER) if row.state in ("kept", "stopped") else None
        for d in devices:
            span = treated if d.arm == "treatment" else controlled if d.arm == "control" else None
            if span is not None:
                out.setdefault(d.device, []).append(span)
    return out


def read(store: Store) -> dict[str, Changes]:
    """Every device's changes, from the store's policies."""
    policies = [(p, store.policy_devices(p.id)) for p in store.list_policies()]
    effort, coached = periods(policies), coaching(policies)
    return {d: Changes(tuple(effort.get(d, ())), tuple(coached.get(d, ())))
            for d in effort.keys() | coached.keys()}


def within(t_ms: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(a <= t_ms < b for a, b in spans)
