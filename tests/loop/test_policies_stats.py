"""The experiment's arithmetic (cloud.loop.experiment_stats) and the seeded split: Welch's
interval against scipy's own, its coverage on normal samples, the decision rule mirrored for a
goal of decrease."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cloud.loop import experiment_stats as es
from cloud.services.policies import split

values = st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30)


@given(values, values)
def test_welch_matches_scipy(treatment: list[float], control: list[float]) -> None:
    lift = es.welch(treatment, control)
    assert lift.treatment_n == len(treatment) and lift.control_n == len(control)
    assert lift.lift == pytest.approx(sum(treatment) / len(treatment)
                                      - sum(control) / len(control), abs=1e-9)
    if es.variance(treatment) + es.variance(control) < 1e-6:
        return  # no spread: scipy has no interval to compare with
    ci = stats.ttest_ind(treatment, control, equal_var=False).confidence_interval(0.95)
    assert lift.ci_low == pytest.approx(ci.low, rel=1e-6, abs=1e-6)
    assert lift.ci_high == pytest.approx(ci.high, rel=1e-6, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.floats(-3, 3), st.floats(0.5, 3), st.floats(0.5, 3), st.integers(5, 40),
       st.integers(5, 40), st.integers(0, 2**31))
def test_the_interval_holds_the_true_difference_most_of_the_time(
    true_lift: float, sd_t: float, sd_c: float, nt: int, nc: int, seed: int
) -> None:
    rng = random.Random(seed)
    trials, covered = 200, 0
    for _ in range(trials):
        t = [rng.gauss(1.0 + true_lift, sd_t) for _ in range(nt)]
        c = [rng.gauss(1.0, sd_c) for _ in range(nc)]
        lift = es.welch(t, c)
        assert lift.ci_low is not None and lift.ci_high is not None
        covered += lift.ci_low <= true_lift <= lift.ci_high
    # 95% nominal; 200 trials: below 88% would be more than four standard errors off
    assert covered / trials >= 0.88


def lift(low: float | None, high: float | None) -> es.Lift:
    mid = None if low is None or high is None else (low + high) / 2
    return es.Lift(10, 10, 0.0, 0.0, mid, low, high)


@pytest.mark.parametrize(("low", "high", "left", "want"), [
    (0.1, 2.0, 2, es.KEEP), (-2.0, -0.1, 2, es.REVERT), (-1.0, 1.0, 1, es.EXTEND),
    (-1.0, 1.0, 0, es.REVERT), (None, None, 1, es.EXTEND), (None, None, 0, es.REVERT),
    (0.0, 1.0, 0, es.REVERT),  # touching zero is not above it
])
def test_the_decision_rule(low: float | None, high: float | None, left: int, want: str
                           ) -> None:
    assert es.decide(lift(low, high), es.INCREASE, left) == want


@given(st.floats(-10, 10), st.floats(0, 10), st.integers(0, 4))
def test_decisions_mirror_for_goal_decrease(low: float, width: float, left: int) -> None:
    up = es.decide(lift(low, low + width), es.INCREASE, left)
    down = es.decide(lift(-(low + width), -low), es.DECREASE, left)
    assert up == down


def test_too_few_devices_give_no_interval() -> None:
    one = es.welch([1.0], [0.0, 1.0])
    assert one.lift == pytest.approx(0.5) and one.ci_low is None and one.ci_high is None
    assert es.welch([], [1.0]).lift is None
    flat = es.welch([2.0, 2.0], [1.0, 1.0])
    assert (flat.ci_low, flat.ci_high) == (1.0, 1.0)
    with pytest.raises(ValueError, match="goal"):
        es.decide(flat, "sideways", 0)


@given(st.sets(st.from_regex(r"bike-[0-9]{1,4}", fullmatch=True), min_size=2, max_size=200),
       st.floats(0.1, 0.9), st.integers(0, 2**31 - 1))
def test_the_split_is_a_seeded_partition(ids: set[str], share: float, seed: int) -> None:
    treatment, control = split(sorted(ids), share, seed)
    assert set(treatment) | set(control) == ids and not set(treatment) & set(control)
    assert treatment and control
    assert abs(len(treatment) - len(ids) * share) <= 1
    assert split(list(reversed(sorted(ids))), share, seed) == (treatment, control)
