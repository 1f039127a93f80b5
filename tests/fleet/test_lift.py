"""The truth's range for a policy's lift (fleetloop.fleet.lift), on experiments played offline
with the simulator's own riders: a change that does nothing has no effect at all, coach mode
adds rides only through its responders, an overreaching target takes rides away, and the
range's centre plus the split's imbalance is exactly the lift a perfect measurement of the
same arms gives, whatever the split.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from statistics import mean

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.settings import DEFAULTS
from fleetloop.fleet.behaviour import build, drive
from fleetloop.fleet.draws import DAY_MS, WEEK_MS
from fleetloop.fleet.lift import LiftError, Window, lift_range, outcome, per_week, replay, starts
from fleetloop.fleet.truth import Truth

START = 1_780_000_000_000
SEED = 5
# Ten-minute samples keep the many replays fast; ride counts do not depend on the interval.
BASE = {**DEFAULTS, "interval_ms": 600_000}
CREATED = START + 3 * WEEK_MS
WINDOW = Window(CREATED, CREATED + 14 * DAY_MS)
LAG_MS = DAY_MS // 2  # the change reaches the treatment's devices half a day after creation
BIKES = [f"bike-{i:05d}" for i in range(1, 41)]


def experiment(change: Mapping[str, int], seed: int = SEED, essential: int = 0
               ) -> tuple[Truth, list[str], list[str]]:
    """Forty riders over five weeks; half of them (a seeded split) get `change` half a day
    after the policy starts, as the signed config path would bring it. The first `essential`
    owners share nothing but vitals; the others share their usage."""
    end = START + 5 * WEEK_MS
    truth = Truth(seed, START, end, 1.0)
    shuffled = random.Random(seed).sample(BIKES, len(BIKES))
    treatment = sorted(shuffled[:20])
    changed = {**BASE, **change}
    for n, d in enumerate(BIKES):
        behaviour = build(d, "bike", seed, START, end, truth)
        truth.event(d, START, "consent", tier="essential" if n < essential else "usage")

        def at(t: int, treated: bool = d in treatment) -> Mapping[str, int]:
            return changed if treated and t >= CREATED + LAG_MS else BASE

        for _ in drive(behaviour, START, end, at):
            pass
    return truth, treatment, sorted(set(BIKES) - set(treatment))


@pytest.fixture(scope="module")
def coach() -> tuple[Truth, list[str], list[str]]:
    return experiment({"coach_mode": 1})


def measured(truth: Truth, arm: Sequence[str], window: Window = WINDOW) -> float:
    return mean(outcome(starts(truth.events(device=d), "ride"), window) for d in arm)


def test_a_change_that_does_nothing_has_no_effect() -> None:
    truth, treatment, control = experiment({"programme": 0})
    r = lift_range(truth, "rides_per_week", treatment, control, WINDOW, base=BASE)
    assert r.effect == 0.0 and r.changed == 0
    assert r.replay_mismatches == 0, "the replay repeats what the truth says happened"
    assert r.truth_lift == pytest.approx(measured(truth, treatment) - measured(truth, control))
    assert r.low < 0.0 < r.high and r.high - r.low == pytest.approx(2 * r.z * r.se)


def test_coach_mode_adds_rides_through_its_responders_only(
        coach: tuple[Truth, list[str], list[str]]) -> None:
    truth, treatment, control = coach
    r = lift_range(truth, "rides_per_week", treatment, control, WINDOW, base=BASE)
    responders = [d for d in treatment if truth.traits(d)["coach_responder"]]
    assert 0 < r.changed <= len(responders), "only responders ride differently"
    # Extra rides, counted one by one: the real run against the replay without coach mode.
    extra = 0
    for d in treatment:
        real = [t for t in starts(truth.events(device=d), "ride")
                if WINDOW.start_ms <= t < WINDOW.end_ms]
        alone = [t for t in starts(replay(truth, d, WINDOW.end_ms + DAY_MS, BASE), "ride")
                 if WINDOW.start_ms <= t < WINDOW.end_ms]
        if d not in responders:
            assert real == alone, f"{d} does not respond to coaching"
        extra += len(real) - len(alone)
    assert extra > 0
    assert r.effect == pytest.approx(extra / len(treatment) / WINDOW.weeks)
    # About what the traits promise: 30-50 % more rides from half the riders.
    promised = mean(truth.traits(d)["coach_effect"] * truth.traits(d)["rides_per_week"]
                    for d in treatment)
    assert 0.3 * promised < r.effect < 2.5 * promised
    assert r.truth_lift == pytest.approx(measured(truth, treatment) - measured(truth, control))
    assert r.replay_mismatches == 0


def test_an_overreaching_target_takes_rides_away() -> None:
    truth, treatment, control = experiment({"target_power_w": 900})
    r = lift_range(truth, "rides_per_week", treatment, control, WINDOW, base=BASE)
    assert r.effect < 0 and r.high < 0.5
    rate = mean(truth.traits(d)["rides_per_week"] for d in treatment)
    assert -0.8 * rate < r.effect < -0.1 * rate, "0.6 times the rides while it lasts"
    assert all(truth.events(kind="overreached", device=d) for d in treatment)
    assert not any(truth.events(kind="overreached", device=d) for d in control)


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=2, max_value=38))
def test_centre_plus_imbalance_is_the_perfect_measurement_whatever_the_split(
        coach: tuple[Truth, list[str], list[str]], rnd: random.Random, k: int) -> None:
    truth, treatment, control = coach
    everyone = treatment + control
    rnd.shuffle(everyone)
    t_arm, c_arm = everyone[:k], everyone[k:]
    r = lift_range(truth, "rides_per_week", t_arm, c_arm, WINDOW, base=BASE)
    assert r.effect + r.imbalance == pytest.approx(r.truth_lift)
    assert r.truth_lift == pytest.approx(measured(truth, t_arm) - measured(truth, c_arm))
    assert (r.treatment_n, r.control_n) == (k, len(BIKES) - k)
    assert r.changed <= len(set(t_arm) & set(treatment))


@given(st.lists(st.integers(min_value=0, max_value=10 * WEEK_MS), max_size=30),
       st.integers(min_value=WEEK_MS, max_value=5 * WEEK_MS),
       st.integers(min_value=1, max_value=4 * WEEK_MS))
def test_the_outcome_is_the_window_against_the_same_length_before(
        times: list[int], start: int, length: int) -> None:
    w = Window(start, start + length)
    assert w.before.end_ms == w.start_ms and w.before.length_ms == w.length_ms
    inside = sum(start <= t < start + length for t in times)
    before = sum(start - length <= t < start for t in times)
    assert per_week(times, w) == pytest.approx(inside / (length / WEEK_MS))
    assert outcome(times, w) == pytest.approx((inside - before) / (length / WEEK_MS))


def test_an_owner_who_shares_no_usage_counts_nothing_however_they_ride() -> None:
    truth, treatment, control = experiment({"coach_mode": 1}, essential=40)
    r = lift_range(truth, "rides_per_week", treatment, control, WINDOW, base=BASE)
    assert (r.effect, r.imbalance, r.se, r.changed) == (0.0, 0.0, 0.0, 0)
    assert truth.events(kind="coach_response"), "they rode more all the same"


def test_rides_the_device_slept_through_never_count() -> None:
    events = [{"d": "b", "t": 5, "kind": "ride", "samples": 0},
              {"d": "b", "t": 7, "kind": "ride", "samples": 3},
              {"d": "b", "t": 9, "kind": "session", "samples": 3}]
    assert starts(events, "ride") == [7]


def test_questions_the_truth_cannot_answer_are_refused(
        coach: tuple[Truth, list[str], list[str]]) -> None:
    truth, treatment, control = coach
    with pytest.raises(LiftError, match="no truth for KPI 'power_mean_w'"):
        lift_range(truth, "power_mean_w", treatment, control, WINDOW)
    with pytest.raises(LiftError, match="both arms"):
        lift_range(truth, "rides_per_week", treatment, [], WINDOW)
    with pytest.raises(LiftError, match="mirror-00001 is not in the truth"):
        lift_range(truth, "rides_per_week", treatment, ["mirror-00001"], WINDOW)
    with pytest.raises(LiftError, match="is a bike, sessions_per_week is a mirror KPI"):
        lift_range(truth, "sessions_per_week", treatment, control, WINDOW)
    with pytest.raises(LiftError, match="not after its start"):
        Window(CREATED, CREATED)
