"""The loop's figures against cases worked out by hand: PHM08 score, the cut-point RMSE, the
alert shares, and folds that never split an engine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.loop import evaluation
from cloud.loop.data import SENSORS, EngineTable, from_rows


def table_of(lives: list[int], units: list[int] | None = None) -> EngineTable:
    units = units or list(range(1, len(lives) + 1))
    u = np.repeat(units, lives).astype(np.int64)
    c = np.concatenate([np.arange(1, n + 1) for n in lives]).astype(np.int64)
    return from_rows(u, c, np.zeros((len(u), len(SENSORS))), "test")


def test_phm08_score_by_hand() -> None:
    # d = -10: exp(10/13) - 1 = 1.158106; d = 0: 0; d = +10: e - 1 = 1.718282
    assert evaluation.phm08_score(np.array([10, 20, 30]), np.array([20, 20, 20])) \
        == pytest.approx(2.876387, abs=1e-6)
    assert evaluation.phm08_score(np.array([5.0]), np.array([5.0])) == 0.0
    # late costs more than early by the same number of cycles
    assert evaluation.phm08_score([30], [20]) > evaluation.phm08_score([10], [20])


def test_rmse_by_hand() -> None:
    assert evaluation.rmse(np.array([1.0, 5.0]), np.array([4.0, 1.0])) == pytest.approx(
        np.sqrt((9 + 16) / 2))


def test_cut_points_of_a_short_engine_by_hand() -> None:
    # life 40: at least 31 cycles observed leaves RULs 7, 8, 9 only (3 cuts, not 5);
    # life 37 cannot be cut as NASA did (37 - 31 < 7) and is not scored
    t = table_of([40, 37])
    rows = evaluation.cut_rows(t)
    assert t.units[rows].tolist() == [1, 1, 1]
    assert sorted(t.rul()[rows].tolist()) == [7, 8, 9]
    # a prediction of 10 everywhere: errors 3, 2, 1 -> sqrt(14 / 3)
    assert evaluation.cut_rmse(t, np.full(len(t.units), 10.0)) == pytest.approx(np.sqrt(14 / 3))


def test_cuts_are_nasa_like_distinct_and_repeatable() -> None:
    t = table_of([128, 200, 362] * 10)
    rows = evaluation.cut_rows(t)
    rul = t.rul()[rows]
    assert len(rows) == 30 * evaluation.CUTS_PER_ENGINE
    assert rul.min() >= 7 and rul.max() <= 145 and (t.cycles[rows] >= 31).all()
    assert len(set(rows.tolist())) == len(rows)
    assert (evaluation.cut_rows(t) == rows).all()  # fixed seed: the same figure every run
    assert not (evaluation.cut_rows(t, seed=1) == rows).all()


def test_cut_rmse_is_uncapped() -> None:
    t = table_of([300])
    capped = np.minimum(t.rul(), 125).astype(float)
    rows = evaluation.cut_rows(t)
    want = evaluation.rmse(capped[rows], t.rul()[rows])
    assert (t.rul()[rows] > 125).any() and want > 0
    assert evaluation.cut_rmse(t, capped) == pytest.approx(want)


def test_alert_shares_by_hand() -> None:
    t = table_of([200, 200, 200])
    rul = t.rul().astype(float)
    predicted = np.full(len(rul), 125.0)
    predicted[(t.units == 1) & (rul <= 160)] = 60  # first alert 160 cycles ahead: both
    predicted[(t.units == 2) & (rul <= 30)] = 20  # alerted, but only 30 cycles ahead
    # unit 3 is never alerted
    f = evaluation.alert_figures(t, predicted, threshold=70)
    assert (f.engines, f.never_alerted) == (3, 1)
    assert f.alerted_ge50_share == pytest.approx(1 / 3)
    assert f.false_alarm_rate == pytest.approx(1 / 3)
    assert f.median_lead_cycles == pytest.approx((160 + 30) / 2)


def test_an_alert_exactly_50_ahead_counts_and_150_is_no_false_alarm() -> None:
    t = table_of([200])
    rul = t.rul()
    f = evaluation.alert_figures(t, np.where(rul <= 50, 0.0, 125.0), 70)
    assert (f.alerted_ge50_share, f.false_alarm_rate) == (1.0, 0.0)
    f = evaluation.alert_figures(t, np.where(rul <= 150, 0.0, 125.0), 70)
    assert f.false_alarm_rate == 0.0
    f = evaluation.alert_figures(t, np.where(rul <= 151, 0.0, 125.0), 70)
    assert f.false_alarm_rate == 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=5, max_size=30), st.integers(2, 5))
def test_folds_never_split_an_engine(lives: list[int], folds: int) -> None:
    units = np.repeat(np.arange(1, len(lives) + 1), lives).astype(np.int64)
    seen = np.zeros(len(units), dtype=int)
    for train, held in evaluation.engine_folds(units, folds):
        assert not set(units[train].tolist()) & set(units[held].tolist())
        seen[held] += 1
    assert (seen == 1).all()  # every row held out exactly once
