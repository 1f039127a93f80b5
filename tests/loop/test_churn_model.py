"""The churn list's learned decision: the shipped file (what it learned from, never the scored
fleets), refusals of a file that is not one, and `fleetloop loop train-churn` rebuilding one
from small simulated fleets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cloud.loop import artefact, churn_model
from cloud.loop.churn_model import FEATURES
from cloud.loop.errors import ModelError
from fleetloop.bench_churn import PROOF_SEEDS, SCORED_SEEDS
from fleetloop.cli import app

runner = CliRunner()


def test_the_shipped_model_learned_from_other_fleets_than_the_scored_ones() -> None:
    m = churn_model.shipped()
    seeds = set(m.header["trained_on"]["seeds"])
    assert seeds and not seeds & set(SCORED_SEEDS) and not seeds & set(PROOF_SEEDS)
    assert m.header["trained_on"]["with_policies"]  # it learned what a policy's change does
    assert 0 < m.threshold < 1 and m.header["rows"] > 1000
    oof = m.header["out_of_fold"]
    assert oof["precision"] >= 0.8 and oof["recall"] >= 0.8  # on fleets the trees did not see


def _row(**values: float) -> list[float]:
    """A steady rider's features, with some changed."""
    row = dict.fromkeys(FEATURES, 0.0)
    row.update(rate_factor=1.0, wander_ratio=1.0, idle_days=1.0, activities=30.0,
               rate_before=3.5, personal=1.0, coached_rate_change=1.0,
               before_coached_factor=1.0, decline_age=99.0, effort_age=99.0,
               minutes_age=99.0, wander_age=99.0, rate_change_14d=1.0, measured_14d=7.0,
               longest_gap=1.5)
    row.update(values)
    return [row[f] for f in FEATURES]


def test_a_fading_rider_is_at_risk_and_a_steady_one_is_not() -> None:
    m = churn_model.shipped()
    steady = m.risk(_row())
    fading = m.risk(_row(decline_llr=8.0, effort_llr=10.0, rate_factor=0.4, effort_drop=0.2,
                         minutes_llr=6.0, minutes_drop=0.3, idle_days=6.0, activities=18.0,
                         decline_age=20.0, effort_age=35.0, minutes_age=35.0,
                         minutes_14d=-0.3, minutes_last=-0.35, effort_14d=-0.15,
                         effort_last=-0.2, rate_change_14d=0.5, measured_14d=3.0,
                         longest_gap=3.0))
    assert 0 <= steady < m.threshold <= fading <= 1
    assert list(m.risks(np.asarray([_row(), _row()]))) == [steady, steady]


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "model.npz"
    churn_model.save(path, churn_model.shipped())
    return path


@pytest.mark.parametrize("change, words", [
    (lambda h: h.update(format="something-else"), "this code reads fleetloop-churn v3"),
    (lambda h: h.update(version=2), "v2, this code reads fleetloop-churn v3"),
    (lambda h: h.update(version=99), "v99"),
    (lambda h: h.update(features=["decline_llr"]), "other features"),
    (lambda h: h.update(threshold=1.5), "'threshold' must be a number between 0 and 1"),
])
def test_a_file_that_is_not_a_usable_model_is_refused_with_its_reason(
        change: Any, words: str, tmp_path: Path) -> None:
    m = churn_model.shipped()
    header = dict(m.header)
    change(header)
    path = tmp_path / "bad.npz"
    artefact.write(path, header, m.forest)
    with pytest.raises(ModelError, match=words):
        churn_model.load(path)


def test_damaged_or_foreign_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("not a model")
    with pytest.raises(ModelError, match="not a fleetloop-churn model"):
        churn_model.load(tmp_path / "text.npz")
    with pytest.raises(ModelError, match="cannot read"):
        churn_model.load(tmp_path / "missing.npz")
    with pytest.raises(ModelError, match="this code reads fleetloop-churn"):
        churn_model.load(artefact.SHIPPED)  # the engine model is not a churn model


def test_a_model_round_trips_through_its_file(tmp_path: Path) -> None:
    m = churn_model.shipped()
    again = churn_model.load(_saved(tmp_path))
    assert again.threshold == m.threshold and again.header == m.header
    x = np.random.default_rng(0).normal(size=(50, len(FEATURES))) * 5
    assert np.array_equal(again.risks(x), m.risks(x))
    assert _saved(tmp_path).read_bytes() == churn_model.SHIPPED.read_bytes()  # same bytes


def test_fit_learns_the_signal_and_chooses_its_threshold_out_of_fold() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(900, len(FEATURES)))
    y = (x[:, 0] + 0.1 * rng.normal(size=900) > 1.0).astype(float)
    m = churn_model.fit(x, y, np.repeat([1, 2, 3], 300), {"trained_on": "test"})
    assert m.header["out_of_fold"]["precision"] > 0.8 and m.header["out_of_fold"]["recall"] > 0.8
    assert set(m.forest.feature[~m.forest.leaf]) & {0}  # it splits on the signal
    with pytest.raises(ValueError, match="at least two fleets"):
        churn_model.fit(x, y, np.ones(900), {})
    with pytest.raises(ValueError, match="disengage and people who stay"):
        churn_model.fit(x, np.zeros(900), np.repeat([1, 2, 3], 300), {})


def test_train_churn_rebuilds_a_model_from_small_fleets(tmp_path: Path) -> None:
    out = tmp_path / "churn.npz"
    result = runner.invoke(app, ["loop", "train-churn", "--out", str(out), "--seeds", "4,5",
                                 "--bikes", "60", "--mirrors", "20", "--intervals", "60",
                                 "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    m = churn_model.load(out)
    assert m.header["trained_on"]["seeds"] == [4, 5] and m.header["rows"] > 60
    assert json.loads(result.stdout)["threshold"] == m.threshold


@pytest.mark.parametrize("args, words", [
    (["--seeds", "1,4"], "seed 1 is one the benchmarks score"),
    (["--seeds", "4,11"], "seed 11 is one the benchmarks score"),
    (["--seeds", "four"], "not a comma-separated list"),
    (["--at-weeks", "11"], "each week must be in 2..10"),
    (["--intervals", "0"], "each must be 1..3600 seconds"),
])
def test_train_churn_refuses_bad_input(args: list[str], words: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["loop", "train-churn", "--out", str(tmp_path / "m.npz"),
                                 "--bikes", "10", "--mirrors", "0", *args])
    assert result.exit_code == 2 and words in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_the_training_policies_reach_some_riders_part_way_and_no_mirror() -> None:
    """--with-policies: coaching for half the riders (half of them from a drawn week, the
    others two weeks later), an over-hard target for two weeks for others; mirrors and the
    rest keep their settings. What the cloud would know of it (known_changes) matches."""
    from fleetloop.bench_churn import Fleet
    from fleetloop.churn_train import POLICY_WEEKS, known_changes, policies
    from fleetloop.fleet.draws import WEEK_MS
    from fleetloop.fleet.truth import Truth

    plain = {"coach_mode": 0, "target_power_w": 0, "interval_ms": 60_000}
    changes = policies(4)
    ids = [f"bike-{i}" for i in range(1, 201)]
    known = known_changes(4, Fleet(Truth(4, 0, 12 * WEEK_MS, 1.0), 0, (*ids, "mirror-1"), 0))
    coached = overreached = 0
    for device in ids:
        plan = changes(device, 0, plain)
        if plan is plain:
            assert device not in known
            continue
        assert callable(plan)
        assert plan(int(POLICY_WEEKS[0] * WEEK_MS) - 1) == plain  # nothing before the drawn week
        late = [plan(int(w * WEEK_MS)) for w in (7.0, 7.5, 9.5, 12.0)]
        if late[0]["coach_mode"] == 1:
            coached += 1
            assert all(s["coach_mode"] == 1 for s in late)  # kept on
            (began, _), = known[device].coached
            assert plan(began - 1) == plain and plan(began)["coach_mode"] == 1
        else:
            overreached += 1
            assert late[-1] == plain  # reverted after two weeks
            (began, until), = known[device].effort
            assert plan(began)["target_power_w"] == 900 and plan(until) == plain
    assert 75 < coached < 125 and 15 < overreached < 50
    assert changes("mirror-1", 0, plain) is plain and "mirror-1" not in known


def test_a_third_of_the_training_owners_share_usage_only() -> None:
    from fleetloop.churn_train import usage_only

    share = sum(usage_only(4, f"bike-{i}") for i in range(1, 601)) / 600
    assert 0.28 < share < 0.39
    assert usage_only(4, "bike-7") == usage_only(4, "bike-7")  # a draw, the same each time
