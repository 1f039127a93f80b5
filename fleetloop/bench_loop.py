"""`fleetloop bench loop`: the optimisation loop proved on a simulated fleet.

A fleet of simulated products runs through the real path (devices, gateway and its Mosquitto,
the cloud under uvicorn; fleetloop.fleet.simulate). Once a few weeks of data exist, cloud ops
(an ops token, over HTTP) start two policies as experiments on two disjoint cohorts of bikes:

- a helpful one: coach mode on (the truth: a coach responder rides 30-50 % more often and
  stops disengaging; half the riders respond);
- a harmful one: a target power far above every rider's sustainable power (the truth: an
  overreached rider rides 0.6 times as often while it lasts).

Both read rides per week. The cloud splits each cohort into treatment and control, pushes the
change to the treatment through the signed config path, and judges each policy by itself when
the record clock passes the window's end. The run is scored against the simulator's truth:

- the helpful policy is kept, and its measured lift lies inside the truth's range
  (fleetloop.fleet.lift: the treatment's real extra rides over the window, with the random
  split's imbalance bounded);
- the harmful policy is reverted at its first evaluation (within one window), and the truth
  says when each of its riders stopped being overreached;
- the churn-risk list as of week W, scored by fleetloop.bench_churn.score against the
  disengagement the truth recorded up to week W + 2 (a coached responder who never
  disengaged is not a positive, whatever their drawn traits said);
- records lost: 0 (the simulator's count).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetloop.fleet.draws import DAY_MS, WEEK_MS
from fleetloop.fleet.lift import LiftRange, Window, base_settings, lift_range
from fleetloop.fleet.options import Options
from fleetloop.fleet.simulate import Simulation, Summary, Throttled
from fleetloop.fleet.truth import Truth

KPI = "rides_per_week"
# Wall seconds between a device's states: each one tells the cloud the device's own time, so
# a device nobody uses for days of data still counts as heard from (a minute is weeks here).
HEARTBEAT_S = 5
SETTLE_S = 5.0  # wall seconds a pushed config may take to reach every device of the fleet
FINAL = ("kept", "reverted", "stopped")
HELPFUL, HARMFUL = "coach-the-cohort", "push-the-power"
COHORTS = {HELPFUL: "loop-coach", HARMFUL: "loop-power"}
Log = Callable[[str], None]


@dataclass(frozen=True)
class LoopPlan:
    """What the proof runs: the fleet, its clock, the two cohorts and the policies' terms."""

    bikes: int = 500
    mirrors: int = 100
    engines: int = 50
    weeks: float = 12.0
    speed: float = 20000.0
    seed: int = 1
    helpful: int = 250  # bikes in the coach-mode cohort
    harmful: int = 150  # bikes in the target-power cohort (disjoint from the first)
    start_week: float = 4.0  # the policies start once this much data exists
    window_days: int = 14
    max_extensions: int = 2
    churn_week: int = 10  # the churn-risk list's week, scored against the truth at W + 2
    # Every product's sampling period while in use. A real bike samples every second; one a
    # minute keeps the fleet's 650 boards within two cores and still gives the churn list a
    # ride's length and power (at one every five minutes its precision fell by about 0.03).
    interval_ms: int = 60_000
    target_power_w: int = 900  # far above the strongest rider's sustainable power (352 W)
    timeout_s: float | None = None

    def check(self) -> None:
        if self.helpful < 4 or self.harmful < 4:
            raise ValueError("each cohort needs at least 4 bikes (two per arm)")
        if self.helpful + self.harmful > self.bikes:
            raise ValueError(f"the cohorts ({self.helpful} + {self.harmful} bikes) are more "
                             f"than the fleet's {self.bikes} bikes")
        if self.start_week * 7 < self.window_days:
            raise ValueError("the policies need a window's worth of data before they start "
                             f"(start week {self.start_week:g}, window {self.window_days} days)")
        last = self.start_week + self.window_days / 7
        if last + 0.5 > self.weeks:
            raise ValueError(f"the first evaluation (week {last:g}) leaves no time to judge "
                             f"within {self.weeks:g} weeks")
        if not 2 <= self.churn_week <= self.weeks - 2:
            raise ValueError(f"the churn list's week must be in 2..{self.weeks - 2:g} "
                             "(truth two weeks later)")

    @property
    def devices(self) -> int:
        return self.bikes + self.mirrors + self.engines

    def mix(self) -> dict[str, float]:
        counts = {"bike": self.bikes, "mirror": self.mirrors, "engine": self.engines}
        return {p: n / self.devices for p, n in counts.items() if n}


def data_time(sim: Simulation, wall_ms: int) -> int:
    """The data time at a wall-clock moment of the run (the cloud stamps evaluations with its
    own clock, the wall's)."""
    fleet = sim.fleet
    wall_start = fleet.end_ms - fleet.span_ms / fleet.speed
    return int(fleet.start_ms + (wall_ms - wall_start) * fleet.speed)


@dataclass
class Seen:
    """What the operator's side saw while the fleet ran."""

    created_ms: int = 0  # data time the policies were created
    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> 201 body
    final: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> last GET body
    states: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # (state, data ms)
    errors: list[str] = field(default_factory=list)


class LoopScenario:
    """The operator's part, called about twice a second while the devices run."""

    def __init__(self, plan: LoopPlan, log: Log) -> None:
        self.plan = plan
        self.log = log
        self.seen = Seen()
        self.token = ""
        self.ids: dict[str, int] = {}
        self.cohorts: dict[str, list[str]] = {}
        self._prepared = False
        self.sim: Simulation | None = None
        self._asked = 0.0  # when the cloud was last asked whether it is ready
        self._poll = Throttled(self.watch, 1.0)

    def __call__(self, sim: Simulation) -> None:
        self.sim = sim
        if not self._prepared:
            self._prepare(sim)
        elif not self.ids:
            # Every device's own data time, not the fleet's clock: on a loaded machine the
            # devices run behind it and catch up sample by sample.
            due = sim.fleet.start_ms + int(self.plan.start_week * WEEK_MS)
            behind = min((b.clock.now_ms for b in sim.boards), default=0)
            if behind >= due and time.monotonic() >= self._asked + 1.0:
                self._asked = time.monotonic()
                if self._ready(due):
                    self._start(sim)
        elif not self.done():
            self._poll()

    def _client(self, sim: Simulation, token: str) -> httpx.Client:
        assert sim.stack is not None
        return httpx.Client(base_url=sim.stack.cloud_url, timeout=60,
                            headers={"Authorization": f"Bearer {token}"})

    def _prepare(self, sim: Simulation) -> None:
        """Make the ops token the proof acts with (an admin's once), and the two cohorts."""
        assert sim.stack is not None
        with sim.stack.admin() as admin:
            made = admin.post("/api/v1/tokens", json={"name": "loop-proof", "role": "ops"})
            made.raise_for_status()
            self.token = made.json()["token"]
        bikes = [d for d, p, _ in sim.plan.devices if p == "bike"]
        self.cohorts = {HELPFUL: bikes[:self.plan.helpful],
                        HARMFUL: bikes[self.plan.helpful:self.plan.helpful + self.plan.harmful]}
        with self._client(sim, self.token) as ops:
            for name, members in self.cohorts.items():
                ops.put(f"/api/v1/cohorts/{COHORTS[name]}",
                        json={"devices": members}).raise_for_status()
        self._prepared = True

    def _ready(self, due_ms: int) -> bool:
        """The cloud has heard from every cohort member, and from each cohort up to `due_ms`
        of record time (a policy's window starts at the newest record time among its
        participants; a device that shares no usage, or rides rarely, may be silent for days)."""
        sim = self.sim
        assert sim is not None
        with self._client(sim, self.token) as ops:
            resp = ops.get("/api/v1/devices")
        if resp.status_code != 200:
            return False
        seen = {d["id"]: d.get("last_seen_ms") for d in resp.json()}
        for members in self.cohorts.values():
            times = [seen.get(d) for d in members]
            if None in times or max(t or 0 for t in times) < due_ms:
                return False
        return True

    def _start(self, sim: Simulation) -> None:
        p = self.plan
        # Riders who ride: a bike that shares no usage shows no rides, nor does one nobody rode
        # in the last weeks; neither could show what a change does.
        common = {"product": "bike", "condition": [{"kpi": KPI, "op": ">", "value": 0}],
                  "outcome": {"kpi": KPI, "goal": "increase"}, "treatment_share": 0.5,
                  "window_days": p.window_days, "max_extensions": p.max_extensions,
                  "seed": p.seed}
        bodies = {HELPFUL: {**common, "name": HELPFUL, "cohort": COHORTS[HELPFUL],
                            "change": {"coach_mode": 1}},
                  HARMFUL: {**common, "name": HARMFUL, "cohort": COHORTS[HARMFUL],
                            "change": {"target_power_w": p.target_power_w}}}
        self.seen.created_ms = sim.fleet.now()
        with self._client(sim, self.token) as ops:
            for name, body in bodies.items():
                resp = ops.post("/api/v1/policies", json=body)
                if resp.status_code != 201:
                    raise RuntimeError(f"policy {name} refused: {resp.status_code} {resp.text}")
                made = resp.json()
                self.ids[name] = int(made["id"])
                self.seen.created[name] = made
                self.seen.states[name] = [(made["state"], self.seen.created_ms)]
                self.log(f"policy {name}: {len(made['treatment'])} treatment, "
                         f"{len(made['control'])} control, {len(made['excluded'])} excluded, "
                         f"window ends {_day(sim, made['window_end_ms'])}")

    def watch(self) -> bool:
        """Read both policies; note each change of state at the data time it was seen."""
        sim = self.sim
        assert sim is not None
        with self._client(sim, self.token) as ops:
            for name, pid in self.ids.items():
                resp = ops.get(f"/api/v1/policies/{pid}")
                if resp.status_code != 200:
                    self.seen.errors.append(f"GET policy {pid}: {resp.status_code}")
                    continue
                body = resp.json()
                self.seen.final[name] = body
                states = self.seen.states[name]
                if states[-1][0] != body["state"]:
                    states.append((body["state"], sim.fleet.now()))
                    self.log(f"policy {name}: {body['state']} "
                             f"({_day(sim, sim.fleet.now())})")
        return self.done()

    def done(self) -> bool:
        return len(self.seen.final) == len(self.ids) and all(
            b["state"] in FINAL for b in self.seen.final.values())


def _day(sim: Simulation, data_ms: int) -> str:
    return f"day {(data_ms - sim.fleet.start_ms) / DAY_MS:.1f}"


# -- scoring against the truth ----------------------------------------------------------------

def deciding(policy: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation that ended the policy (the last one), if any."""
    evaluations = policy.get("evaluations") or []
    return evaluations[-1] if evaluations else None


def score_helpful(truth: Truth, policy: dict[str, Any], base: dict[str, int],
                  sim: Simulation) -> dict[str, Any]:
    """Kept, with the measured lift inside the truth's range; once kept, the change reaches
    the control's riders too (the truth's rides say which settings they rode with)."""
    ev = deciding(policy)
    out: dict[str, Any] = {"state": policy["state"], "evaluations": len(policy["evaluations"]),
                           "treatment": len(policy["treatment"]),
                           "control": len(policy["control"]),
                           "excluded": len(policy["excluded"])}
    if ev is None:
        return {**out, "ok": False, "why": "never judged"}
    rng = _range(truth, policy, ev, base)
    out.update(decision=ev["decision"], lift=ev["lift"], ci_low=ev["ci_low"],
               ci_high=ev["ci_high"], truth=rng.as_dict(), inside=rng.holds(ev["lift"]),
               measurement_error=round(ev["lift"] - rng.truth_lift, 3))
    kept_ms = data_time(sim, int(ev["at_ms"]))
    out["judged_days_after_window"] = round((kept_ms - int(ev["window_end_ms"])) / DAY_MS, 2)
    # The config reaches a device within wall seconds: on the data clock that is days.
    settled = kept_ms + max(DAY_MS, int(SETTLE_S * 1000 * sim.options.speed))
    rode = coached = 0
    for d in policy["control"]:
        later = [e for e in truth.events(kind="ride", device=d) if e["t"] > settled]
        rode += bool(later)
        coached += bool(later) and all(e["coach_mode"] == 1 for e in later)
    out.update(control_rode_after_keep=rode, control_coached_after_keep=coached)
    out["ok"] = policy["state"] == "kept" and out["inside"]
    return out


def score_harmful(truth: Truth, policy: dict[str, Any], base: dict[str, int],
                  sim: Simulation) -> dict[str, Any]:
    """Reverted at its first evaluation; when each treatment rider stopped being overreached,
    by the truth."""
    evs = policy.get("evaluations") or []
    out: dict[str, Any] = {"state": policy["state"], "evaluations": len(evs),
                           "treatment": len(policy["treatment"]),
                           "control": len(policy["control"]),
                           "excluded": len(policy["excluded"])}
    if not evs:
        return {**out, "ok": False, "why": "never judged"}
    first = evs[0]
    rng = _range(truth, policy, first, base)
    out.update(decision=first["decision"], lift=first["lift"], ci_low=first["ci_low"],
               ci_high=first["ci_high"], truth=rng.as_dict(), inside=rng.holds(first["lift"]),
               measurement_error=round(first["lift"] - rng.truth_lift, 3))
    # The harm as the riders lived it: from the change reaching them to the revert reaching
    # them (the truth's overreached and recovered events), against the window's end.
    end = int(first["window_end_ms"])
    harmed, exposure, late = 0, [], []
    for d in policy["treatment"]:
        hurt = truth.events(kind="overreached", device=d)
        if not hurt:
            continue
        harmed += 1
        back = [e["t"] for e in truth.events(kind="recovered", device=d) if e["t"] > hurt[0]["t"]]
        if back:
            exposure.append((back[0] - hurt[0]["t"]) / DAY_MS)
            late.append((back[0] - end) / DAY_MS)
    out.update(harmed=harmed, recovered=len(exposure),
               exposure_days_mean=round(sum(exposure) / len(exposure), 1) if exposure else None,
               exposure_days_max=round(max(exposure), 1) if exposure else None,
               revert_days_after_window_max=round(max(late), 1) if late else None,
               judged_days_after_window=round((data_time(sim, int(first["at_ms"])) - end)
                                              / DAY_MS, 2))
    out["ok"] = (policy["state"] == "reverted" and first["decision"] == "revert"
                 and len(evs) == 1 and out["inside"] and len(exposure) == harmed)
    return out


def _range(truth: Truth, policy: dict[str, Any], ev: dict[str, Any],
           base: dict[str, int]) -> LiftRange:
    window = Window(int(ev["window_start_ms"]), int(ev["window_end_ms"]))
    return lift_range(truth, KPI, policy["treatment"], policy["control"], window, base=base)


def decisions_audited(sim: Simulation, token: str) -> list[dict[str, Any]]:
    """The audit log's policy decisions (actor, action, target)."""
    if not token:
        return []
    assert sim.stack is not None
    with httpx.Client(base_url=sim.stack.cloud_url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as ops:
        resp = ops.get("/api/v1/audit", params={"actor": "system", "limit": 100})
    if resp.status_code != 200:
        return []
    return [{"actor": e["actor"], "action": e["action"], "target": e["target"]}
            for e in resp.json() if str(e["action"]).startswith("policy.")]


# The churn list's figures are given for these groups as well: who a policy's change reached
# (coaching reaches the helpful policy's control too once it is kept) and who none did.
UNTOUCHED, COACHED, OVERREACHED = "no change", "coached", "target power"


def churn_groups(policies: dict[str, dict[str, Any]], devices: Sequence[str]
                 ) -> dict[str, str]:
    """Each bike and mirror's group by the policies as they ended: the helpful policy's
    participants (both arms, when it was kept), the harmful one's treatment, everyone else."""
    groups = {d: UNTOUCHED for d in devices if not d.startswith("engine")}
    helpful, harmful = policies.get(HELPFUL), policies.get(HARMFUL)
    if helpful is not None:
        arms = [*helpful.get("treatment", []),
                *(helpful.get("control", []) if helpful.get("state") == "kept" else [])]
        groups.update({d: COACHED for d in arms if d in groups})
    if harmful is not None:
        groups.update({d: OVERREACHED for d in harmful.get("treatment", []) if d in groups})
    return groups


def score_churn(sim: Simulation, week: int,
                policies: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The churn-risk list as of `week`, scored by bench_churn's own scoring on the cloud's
    store, against the disengagement the truth recorded; with each churn_groups group's own
    figures."""
    from cloud.db import open_database
    from fleetloop.bench_churn import Fleet, as_dict, disengagement_as_lived, score

    devices = tuple(d for d, _, _ in sim.plan.devices)
    fleet = Fleet(disengagement_as_lived(sim.truth), sim.fleet.start_ms, devices,
                  sim.summary.stored)
    db = open_database(sim.home / "cloud" / "cloud.db")
    db.open()
    try:
        with db.connection() as store:
            return as_dict(score(store, fleet, week, churn_groups(policies or {}, devices)))
    finally:
        db.close()


def bench_loop(plan: LoopPlan, out: Path | None = None, log: Log = lambda _line: None
               ) -> dict[str, Any]:
    """Run the proof once (in `out`, or a throwaway directory) and score it."""
    plan.check()
    with tempfile.TemporaryDirectory(prefix="fleetloop-loop-") as tmp:
        root = out or Path(tmp) / "sim"
        options = Options(devices=plan.devices, mix=plan.mix(), speed=plan.speed,
                          weeks=plan.weeks, seed=plan.seed, out=root, timeout_s=plan.timeout_s,
                          interval_ms=plan.interval_ms, heartbeat_s=HEARTBEAT_S)
        sim = Simulation(options)
        scenario = LoopScenario(plan, log)
        scores: dict[str, Any] = {}

        def after(s: Simulation) -> None:
            base = {**base_settings("bike"), "interval_ms": plan.interval_ms}
            if scenario.ids:
                scenario.sim = s
                scenario.watch()  # the policies as they ended
            final = scenario.seen.final
            if HELPFUL in final:
                scores["helpful"] = score_helpful(s.truth, final[HELPFUL], base, s)
            if HARMFUL in final:
                scores["harmful"] = score_harmful(s.truth, final[HARMFUL], base, s)
            scores["churn"] = score_churn(s, plan.churn_week, final)
            scores["audit"] = decisions_audited(s, scenario.token)

        began = time.monotonic()
        summary = sim.run(scenario, after)
        wall = round(time.monotonic() - began, 1)
    return result(plan, summary, scenario.seen, scores, wall)


def result(plan: LoopPlan, summary: Summary, seen: Seen, scores: dict[str, Any],
           wall_s: float) -> dict[str, Any]:
    helpful, harmful = scores.get("helpful", {}), scores.get("harmful", {})
    ok = (bool(helpful.get("ok")) and bool(harmful.get("ok")) and summary.lost == 0
          and summary.duplicates == 0 and summary.complete and not seen.errors)
    windows = [int(b["window_start_ms"]) for b in seen.created.values()]
    started = (round((min(windows) - summary.data_start_ms) / WEEK_MS, 1)
               if windows and summary.data_start_ms else None)
    return {"plan": asdict(plan), "ok": ok, "started_week": started,
            "helpful": helpful, "harmful": harmful,
            "churn": scores.get("churn", {}), "audit": scores.get("audit", []),
            "policies": {name: _brief(body) for name, body in seen.final.items()},
            "states": {name: [[st, at] for st, at in states]
                       for name, states in seen.states.items()},
            "lost": summary.lost,
            "duplicates": summary.duplicates, "sampled": summary.sampled,
            "stored": summary.stored, "complete": summary.complete, "wall_s": wall_s,
            "errors": seen.errors}


def _brief(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy as it ended, without its device lists (kept in the result: small)."""
    return {k: v for k, v in policy.items() if k not in ("treatment", "control", "excluded")}


def _yes(flag: object) -> str:
    return "yes" if flag else "NO"


def table(result: dict[str, Any]) -> str:
    """The docs table of one `bench loop` run."""
    p, hp, hm, ch = result["plan"], result["helpful"], result["harmful"], result["churn"]
    rows = ["| policy | arms (excluded) | evaluations | decision, state | measured lift [95% CI] "
            "| truth's range (effect; perfect measurement) | inside |",
            "|---|---|---|---|---|---|---|"]
    for what, s in (("coach mode on (helpful)", hp), (f"target power {p['target_power_w']} W "
                                                      "(harmful)", hm)):
        if not s.get("truth"):
            rows.append(f"| {what} | | {s.get('evaluations', 0)} | {s.get('state', '-')} "
                        f"| not judged | | NO |")
            continue
        t = s["truth"]
        rows.append(
            f"| {what} | {s['treatment']} / {s['control']} ({s['excluded']}) "
            f"| {s['evaluations']} | {s['decision']}, {s['state']} "
            f"| {s['lift']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}] "
            f"| [{t['low']:+.2f}, {t['high']:+.2f}] ({t['effect']:+.2f}; "
            f"{t['truth_lift']:+.2f}) | {_yes(s['inside'])} |")
    rows.append("")
    if hm.get("harmed") is not None:
        rows.append(f"Harmful policy: judged {hm['judged_days_after_window']} data days after "
                    f"its window ended; each of its {hm['harmed']} overreached riders was "
                    f"overreached for {hm['exposure_days_mean']} days on average (at most "
                    f"{hm['exposure_days_max']}), the last back to normal "
                    f"{hm['revert_days_after_window_max']} days after the window's end.")
    if ch:
        rows.append(f"Churn-risk list at week {ch['week']}, scored against the truth at week "
                    f"{ch['week'] + 2}: precision {ch['precision']}, recall {ch['recall']} "
                    f"({ch['positives']} positives, {ch['listed']} listed, {ch['scored']} of "
                    f"{ch['people']} people scored)"
                    + "".join(f"; {g}: {f['precision']}, {f['recall']} ({f['positives']} "
                              f"positives, {f['listed']} listed)"
                              for g, f in ch.get("groups", {}).items()) + ".")
    rows.append(f"Records lost: {result['lost']}, duplicates: {result['duplicates']} "
                f"({result['stored']:,} stored).")
    rows.append("")
    rows.append(f"{p['bikes']} bikes, {p['mirrors']} mirrors and {p['engines']} engines over "
                f"{p['weeks']:g} weeks at {p['speed']:,.0f}x (seed {p['seed']}, one sample every "
                f"{p['interval_ms'] // 1000} s while in use); cohorts of {p['helpful']} and "
                f"{p['harmful']} bikes; policies started at week {result.get('started_week')} (due "
                f"at {p['start_week']:g}, once the cloud had heard from every member) with "
                f"{p['window_days']}-day windows and up to {p['max_extensions']} extensions. "
                f"Took {result['wall_s']} s; measured {result.get('measured', '?')}.")
    return "\n".join(rows)
