"""When a pushed setting, not the person, set the effort: the periods a policy's change to
a ride's target power or programme was in force on a device.

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

from collections.abc import Iterable, Sequence

from cloud.loop.activity import DAY_MS
from cloud.policy_store import PolicyDeviceRow, PolicyRow
from cloud.store import Store

# The settings that set a ride's effort (protocol.config: bike settings)
EFFORT_SETTINGS = ("target_power_w", "programme")
MARGIN_MS = 2 * DAY_MS  # after a reverted window's end: the revert on its way to the device
FOREVER = 2**62

Periods = dict[str, list[tuple[int, int]]]  # device -> [(from_ms, to_ms)]


def periods(policies: Iterable[tuple[PolicyRow, Sequence[PolicyDeviceRow]]]) -> Periods:
    """Each device's periods under a change to an effort setting, from policies and arms."""
    out: Periods = {}
    for row, devices in policies:
        change = row.spec.get("change") or {}
        if not any(name in change for name in EFFORT_SETTINGS):
            continue
        treated = (row.window_start_ms, row.window_end_ms + MARGIN_MS
                   if row.state == "reverted" else FOREVER)
        controlled = (row.window_end_ms, FOREVER) if row.state in ("kept", "stopped") else None
        for d in devices:
            span = treated if d.arm == "treatment" else controlled if d.arm == "control" else None
            if span is not None:
                out.setdefault(d.device, []).append(span)
    return out


def read(store: Store) -> Periods:
    """Every device's periods, from the store's policies."""
    return periods((p, store.policy_devices(p.id)) for p in store.list_policies())


def within(t_ms: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(a <= t_ms < b for a, b in spans)
