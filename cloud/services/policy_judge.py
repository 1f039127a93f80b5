"""The cloud judges its running policies by itself (a cloud.ticker job): a policy is judged
when its record clock, the newest record time among its participants, passes its window's
end. Record time, not the wall clock: a window of 14 days means 14 days of the devices' own
data, however late or fast it reaches the cloud.

Data arrives late: a gateway or a device buffers while its link is down, and a device that
restarted for a pushed config is behind the others for a while. So the judge also waits until
each arm has mostly been heard from past the window's end with its data in (HEARD_SHARE of
its devices: a record dated after the end is stored, or a state dated after it and every
record the device had made by then; DeviceRow.heard_past), or until the record clock is
LATE_GRACE_MS past the end (devices switched off for good must not hold a policy forever). A
state alone does not do: a device with a backlog reports its clock before its buffered records
arrive. A device not heard from past the end when it is judged drops out of that evaluation
(listed as missing): its window is not complete, and counting what has arrived would read a
late device as an idle one.

Judging: per participant, the outcome KPI over the window minus the same KPI over the same
length just before it (cloud.loop.experiment_kpis.outcome; devices without a value drop out of
that evaluation), the treatment's mean minus the control's with its 95% interval and the
decision (cloud.loop.experiment_stats). Then, in one transaction with the evaluation and its
audit entry (actor `system`, the evidence in it):
- keep: state kept; the change stays on the treatment devices and goes to the control ones;
- revert: state reverted; the treatment devices are resolved again without it (a new config
  version each, nobody's profile deleted);
- extend: the window's end moves one window on (the window then spans the whole time since
  its start: more data, a narrower interval).

The evidence is computed before the transaction (it reads many rows); inside it the policy is
read again and the decision is stored only if it is still running with the same window end.
A second process judging the same window at the same time therefore stores nothing, and
(policy, n) is unique besides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cloud.loop import experiment_kpis as ek
from cloud.loop import experiment_stats as es
from cloud.policy_store import EvaluationRow, PolicyRow
from cloud.services import audit
from cloud.services import policies as ps
from cloud.services.audit import Offline
from cloud.services.config import ConfigSigner
from cloud.store import Store

HEARD_SHARE = 0.9  # of each arm, heard from past the window's end before it is judged
LATE_GRACE_MS = 7 * 86_400_000  # record time past the end after which it is judged anyway
SYSTEM = Offline(name="system", role="system")
ACTION = {es.KEEP: "policy.keep", es.REVERT: "policy.revert", es.EXTEND: "policy.extend"}


@dataclass(frozen=True)
class Outcomes:
    treatment: dict[str, float]  # device -> its outcome change
    control: dict[str, float]
    missing: list[str]  # participants without a value (or no longer consenting to it)


def outcomes(store: Store, policy: PolicyRow, treatment: list[str], control: list[str]
             ) -> Outcomes:
    kpi = policy.spec["outcome"]["kpi"]
    info = ek.catalogue(policy.product)[kpi]
    arms: dict[str, dict[str, float]] = {"t": {}, "c": {}}
    missing: list[str] = []
    for arm, ids in (("t", treatment), ("c", control)):
        for device_id in ids:
            device = store.get_device(device_id)
            # a device whose consent narrowed since it joined is not read any more: its data
            # was deleted (cloud.services.consent) and would read as a drop in use
            if device is None or not device.heard_past(policy.window_end_ms) \
                    or not ek.permits(device, info):
                value = None  # gone, its window not complete yet, or no longer consenting
            else:
                value = ek.outcome(store, device, kpi, policy.window_start_ms,
                                   policy.window_end_ms)
            if value is None:
                missing.append(device_id)
            else:
                arms[arm][device_id] = value
    return Outcomes(arms["t"], arms["c"], sorted(missing))


def evidence(policy: PolicyRow, o: Outcomes, clock: int | None) -> dict[str, Any]:
    """What the decision rests on, as stored, shown and audited."""
    lift = es.welch(list(o.treatment.values()), list(o.control.values()))
    left = int(policy.spec["max_extensions"]) - policy.extensions
    decision = es.decide(lift, policy.spec["outcome"]["goal"], left)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    return {"window_start_ms": policy.window_start_ms, "window_end_ms": policy.window_end_ms,
            "record_clock_ms": clock, "kpi": policy.spec["outcome"]["kpi"],
            "goal": policy.spec["outcome"]["goal"],
            "treatment_n": lift.treatment_n, "control_n": lift.control_n,
            "treatment_mean": r(lift.treatment_mean), "control_mean": r(lift.control_mean),
            "lift": r(lift.lift), "ci_low": r(lift.ci_low), "ci_high": r(lift.ci_high),
            "decision": decision, "extensions_left": left, "missing": o.missing[:50]}


def judge(store: Store, signer: ConfigSigner, policy: PolicyRow, now_ms: int) -> str | None:
    """Judge one running policy if its record clock (the newest record time among its
    treatment and control devices) passed its window end; the decision stored, or None (not
    due, or judged meanwhile by another process)."""
    clock = store.policy_record_clock(policy.id)
    if clock is None or clock < policy.window_end_ms or not _arms_heard(store, policy, clock):
        return None
    devices = store.policy_devices(policy.id)
    treatment = [d.device for d in devices if d.arm == ps.TREATMENT]
    control = [d.device for d in devices if d.arm == ps.CONTROL]
    proof = evidence(policy, outcomes(store, policy, treatment, control), clock)
    decision = str(proof["decision"])
    with store.transaction():
        now = store.get_policy(policy.id)
        if now is None or now.state != ps.RUNNING or now.window_end_ms != policy.window_end_ms:
            return None
        n = len(store.evaluations(policy.id)) + 1
        store.insert_evaluation(EvaluationRow(policy.id, n, now_ms, proof))
        if decision == es.EXTEND:
            new = replace(now, extensions=now.extensions + 1,
                          window_end_ms=now.window_end_ms + ps.window_ms(now),
                          reason=_words(proof), updated_ms=now_ms)
            store.save_policy_state(new)
            touched: list[str] = []
        else:
            state = ps.KEPT if decision == es.KEEP else ps.REVERTED
            new = replace(now, state=state, reason=_words(proof), updated_ms=now_ms)
            store.save_policy_state(new)
            # kept: the control arm gains the change; reverted: the treatment arm loses it
            touched = control if decision == es.KEEP else treatment
        configs = ps.deliver(store, signer, touched, now_ms) if touched else {}
        audit.record(store, SYSTEM, ACTION[decision], f"policy:{policy.id}", now_ms,
                     before={"state": now.state, "window_end_ms": now.window_end_ms},
                     after={**proof, "state": new.state, "configs": len(configs)},
                     reason=new.reason)
    return decision


def _arms_heard(store: Store, policy: PolicyRow, clock: int) -> bool:
    """Whether enough of each arm has reported past the window's end to judge it, or the
    record clock is so far past it that the rest are not coming (see the module's words)."""
    if clock >= policy.window_end_ms + LATE_GRACE_MS:
        return True
    heard = store.policy_heard(policy.id, policy.window_end_ms)
    return all(n == 0 or past >= HEARD_SHARE * n for n, past in heard.values())


def _words(p: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "n/a" if x is None else f"{x:+.3g}"

    interval = ("no interval (too few devices)" if p["ci_low"] is None
                else f"95% CI [{f(p['ci_low'])}, {f(p['ci_high'])}]")
    what = {es.KEEP: "kept", es.REVERT: "reverted", es.EXTEND: "extended by one window"}
    return (f"{what[p['decision']]}: lift {f(p['lift'])} {p['kpi']}, {interval},"
            f" treatment {p['treatment_n']} vs control {p['control_n']} devices")


def run(store: Store, signer: ConfigSigner, now_ms: int) -> dict[int, str]:
    """Judge every running policy that is due; policy id -> decision. One policy's failure
    does not stop the others (it is logged by the ticker and tried again next turn)."""
    out: dict[int, str] = {}
    failed: Exception | None = None
    for policy in store.running_policies():
        try:
            decision = judge(store, signer, policy, now_ms)
        except Exception as exc:  # judged again at the next turn
            failed = exc
            continue
        if decision is not None:
            out[policy.id] = decision
    if failed is not None:
        raise failed
    return out


def job(signer: ConfigSigner) -> Callable[[Store, int], None]:
    """The ticker's run function: (store, now_ms)."""
    def tick(store: Store, now_ms: int) -> None:
        run(store, signer, now_ms)
    return tick
