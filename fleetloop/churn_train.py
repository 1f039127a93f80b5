"""Rebuild the churn model (cloud/loop/models/churn-v3.npz) from simulated fleets.

Each training fleet is the simulator's riders and mirror users of one seed, played over the
span as `fleetloop bench churn` plays them (the seeds it and the loop's proof score are never
learned from); the list is made at a few weeks of the span and every person not already
lapsed is one row: their evidence (cloud.loop.churn.Evidence.features) and whether the truth
has them disengaging within two weeks. Each fleet is played at each sampling interval, each
once plain and once with policies reaching some riders part-way, as the loop's proof runs
them; a share of the owners share usage only, as the simulator's consent mix has them.
cloud.loop.churn_model fits the trees and picks the threshold out of fold, a seed (all its
playings) at a time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from cloud.loop import churn, churn_model, forced, health, kpis
from cloud.loop.churn_model import ChurnModel
from cloud.loop.kpis import History, permits
from cloud.store import Store
from fleetloop import bench_churn
from fleetloop.fleet.behaviour import SettingsAt
from fleetloop.fleet.draws import DAY_MS, WEEK_MS
from protocol.consent import PERSONAL

# Twenty fleets: with six (4-9) the trees fitted as well out of fold but listed the loop's
# proof's people with a threshold that moved more from seed to seed.
SEEDS = (4, 5, 6, 7, 8, 9, *range(12, 26))
# The list made two weeks before the span's end, as the benchmark makes it. Lists made
# earlier in the span (weeks 6 and 8, where some onsets lie after the list) fitted together
# with it gave a threshold that scored worse at week 10 and no better at week 8.
AT_WEEKS = (10,)
SPAN_WEEKS = 12
# The sampling of the fleets it learns from: one a minute, as the benchmark and the loop's
# proof sample, and one every five minutes (coarser rides: shorter runs of records, rounder
# minutes), as a deployment that samples sparingly would.
INTERVALS_S = (60, 300)
# Policies part-way through the span, as the loop's proof runs them (with_policies): each
# fleet is played once more at each interval with half the riders coached, half of them
# from a drawn week (the treatment) and the other half two weeks later (the control, once the
# policy is kept), and another share set an over-hard target power from the drawn week for
# two weeks, then reverted (coaching makes a responder ride more and halts their decline; an
# over-hard target thins the rides while it lasts). What the cloud knows of it (the periods
# cloud.loop.forced reads from a policy's arms and window) is what the model reads.
COACHED_SHARE = 0.5  # half from the drawn week, half two weeks later
OVERREACHED_SHARE = 0.15
POLICY_WEEKS = (3.0, 5.0)  # when the first change reaches a device, drawn in this range
CONTROL_DELAY_MS = 2 * WEEK_MS  # the policy's window: the control is coached after it
# The consent mix of the simulator's owners (fleetloop.fleet.options.CONSENT_MIX: 60 %
# personal, 30 % usage, 10 % essential, whose usage is not seen): a third of those seen share
# usage only (no start times, no reps). Trained on everyone sharing personal data, the trees
# never learned what a usage-only device's evidence says: on the loop's proof they found
# 46 % of the usage-only mirror users who disengage.
USAGE_ONLY_SHARE = 1 / 3
OVERREACH_W = 900
OVERREACH_MS = 2 * WEEK_MS
COACHED, OVERREACHED = "coached", "target power"


@dataclass(frozen=True)
class Person:
    """What the churn model is given of one person not lapsed at the list's week, and the
    truth's label."""

    device: str
    product: str
    personal: bool
    history: History
    reps: dict[int, float] | None
    changes: forced.Changes
    disengaging: bool

    def evidence(self) -> churn.Evidence | None:
        return churn.evidence(self.history, self.product, self.personal, self.reps,
                              self.changes.effort, self.changes.coached)


def people_at(store: Store, fleet: bench_churn.Fleet, week: int,
              changes: dict[str, forced.Changes] | None = None) -> list[Person]:
    """Everyone not lapsed at the week, with what the cloud knows of the policies' changes
    that reached them (`changes`: by device) and the truth's label (as lived: coaching may
    have halted a decline before it began)."""
    at = fleet.start_ms + week * WEEK_MS
    lived = bench_churn.disengagement_as_lived(fleet.truth)
    out: list[Person] = []
    for device in store.list_devices():
        if device.product not in ("bike", "mirror"):
            continue
        k = kpis.device_kpis(store, device, at)
        h = k.history
        if h is None or not any(a.start_ms >= at - bench_churn.LAPSED_DAYS * DAY_MS
                                for a in h.acts):
            continue
        onset = lived.traits(device.id).get("disengage_at_ms")
        out.append(Person(device.id, device.product, permits(k.consent, PERSONAL), h,
                          health.session_reps(store, device, k),
                          (changes or {}).get(device.id, forced.NONE),
                          onset is not None and onset <= at + 2 * WEEK_MS))
    return out


def rows_of(people: Sequence[Person]) -> tuple[list[tuple[float, ...]], list[bool]]:
    """One row per person with evidence: their features, and the truth's label."""
    x: list[tuple[float, ...]] = []
    y: list[bool] = []
    for person in people:
        e = person.evidence()
        if e is None:
            continue
        x.append(e.features())
        y.append(person.disengaging)
    return x, y


def policy_draw(seed: int, device: str, start_ms: int) -> tuple[str | None, int]:
    """Which change reaches a bike of the fleet and when: (COACHED, OVERREACHED or None, ms)."""
    if not device.startswith("bike-"):
        return None, 0
    rng = random.Random(f"churn-policies:{seed}:{device}")
    u = rng.random()
    at = start_ms + int(rng.uniform(*POLICY_WEEKS) * WEEK_MS)
    if u < COACHED_SHARE / 2:
        return COACHED, at
    if u < COACHED_SHARE:
        return COACHED, at + CONTROL_DELAY_MS
    if u < COACHED_SHARE + OVERREACHED_SHARE:
        return OVERREACHED, at
    return None, at


def usage_only(seed: int, device: str) -> bool:
    """Whether the device's owner shares usage only (drawn: USAGE_ONLY_SHARE of them)."""
    return random.Random(f"churn-consent:{seed}:{device}").random() < USAGE_ONLY_SHARE


def with_consent(seed: int, people: Sequence[Person]) -> list[Person]:
    """The people as the consent mix has them: a usage-only owner's device neither shows its
    start times nor its reps."""
    return [replace(p, personal=False, reps=None) if usage_only(seed, p.device) else p
            for p in people]


def policies(seed: int) -> bench_churn.Changes:
    """The mid-span changes of one fleet: drawn per device from the seed, bikes only."""

    def changes(device: str, start_ms: int, plain: dict[str, int]) -> SettingsAt:
        kind, at = policy_draw(seed, device, start_ms)
        if kind == COACHED:
            coached = {**plain, "coach_mode": 1}
            return lambda t: coached if t >= at else plain
        if kind == OVERREACHED:
            hard = {**plain, "target_power_w": OVERREACH_W}
            return lambda t: hard if at <= t < at + OVERREACH_MS else plain
        return plain

    return changes


def known_changes(seed: int, fleet: bench_churn.Fleet) -> dict[str, forced.Changes]:
    """What the cloud would know of the policies(seed) changes, as cloud.loop.forced reads a
    policy's arms and window: coaching from when it reached a device on; a target power
    from when it did to the revert and forced.MARGIN_MS."""
    out: dict[str, forced.Changes] = {}
    for device in fleet.devices:
        kind, at = policy_draw(seed, device, fleet.start_ms)
        if kind == COACHED:
            out[device] = forced.Changes(coached=((at, forced.FOREVER),))
        elif kind == OVERREACHED:
            out[device] = forced.Changes(effort=((at, at + OVERREACH_MS + forced.MARGIN_MS),))
    return out


def train(seeds: Sequence[int] = SEEDS, at_weeks: Sequence[int] = AT_WEEKS, bikes: int = 500,
          mirrors: int = 100, intervals_s: Sequence[int] = INTERVALS_S,
          with_policies: bool = True, log: Callable[[str], None] = lambda _line: None
          ) -> ChurnModel:
    xs: list[tuple[float, ...]] = []
    ys: list[bool] = []
    groups: list[int] = []
    for seed in seeds:
        if seed in bench_churn.SCORED_SEEDS or seed in bench_churn.PROOF_SEEDS:
            raise ValueError(f"seed {seed} is one the benchmarks score: train on others")
        playings: list[tuple[int, bench_churn.Changes | None]] = [
            (interval, None) for interval in intervals_s]
        if with_policies:
            playings += [(interval, policies(seed)) for interval in intervals_s]
        for interval, changes in playings:
            with bench_churn.simulated(seed, [("bike", bikes), ("mirror", mirrors)], SPAN_WEEKS,
                                       interval * 1000, changes) as (store, fleet):
                known = known_changes(seed, fleet) if changes else None
                for week in at_weeks:
                    x, y = rows_of(with_consent(seed, people_at(store, fleet, week, known)))
                    xs += x
                    ys += y
                    groups += [seed] * len(y)  # one fold holds a seed's every row
            log(f"seed {seed}, a sample every {interval} s{' with policies' if changes else ''}"
                f": {len(ys)} rows so far, {sum(ys)} of them disengaging")
    header = {"trained_on": {"seeds": list(seeds), "weeks": list(at_weeks), "bikes": bikes,
                             "mirrors": mirrors, "span_weeks": SPAN_WEEKS,
                             "intervals_s": list(intervals_s),
                             "usage_only_share": round(USAGE_ONLY_SHARE, 4),
                             "with_policies": with_policies and {
                                 "coached_share": COACHED_SHARE,
                                 "overreached_share": OVERREACHED_SHARE,
                                 "weeks": list(POLICY_WEEKS),
                                 "control_delay_weeks": CONTROL_DELAY_MS / WEEK_MS,
                                 "target_power_w": OVERREACH_W}}}
    return churn_model.fit(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float),
                           np.asarray(groups), header)
