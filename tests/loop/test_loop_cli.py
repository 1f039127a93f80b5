"""`fleetloop loop evaluate-engines` and `train-engines`: the JSON a script reads, the test-split
path on files in NASA's layout carved from the training engines, and refusals of bad input
(exit 2, a reason on stderr, never a traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.loop import artefact, holdout
from cloud.loop.data import EngineTable
from fleetloop.cli import app
from fleetloop.loop_cli import _summary as summary
from fleetloop.loop_cli import training_table

sys.path.insert(0, str(Path(__file__).parent))
from nasa_files import carve, write_trajectories  # noqa: E402

runner = CliRunner()
CV_KEYS = {"engines", "alerted_ge50_share", "false_alarm_rate", "rul_rmse"}
TEST_KEYS = {"test_engines", "test_rul_rmse", "test_phm08_score"}


@pytest.fixture(scope="module")
def table() -> EngineTable:
    return training_table(None)


@pytest.fixture(scope="module")
def nasa(table: EngineTable, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train_FD001.txt of the 80 training units; test and RUL files of the 20 held out."""
    d = tmp_path_factory.mktemp("nasa")
    test, rul, _ = carve(table, holdout.FLEET_UNITS, d)
    return {"train": write_trajectories(table.only(holdout.TRAIN_UNITS), d / "train_FD001.txt"),
            "test": test, "rul": rul}


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["loop", *map(str, args)])
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_the_shipped_model_on_a_nasa_test_split_carved_from_held_out_engines(
        nasa: dict[str, Path]) -> None:
    code, out, err = run("evaluate-engines", "--train", nasa["train"], "--test", nasa["test"],
                         "--rul", nasa["rul"], "--model", artefact.SHIPPED, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert CV_KEYS | TEST_KEYS <= set(r)
    assert (r["engines"], r["test_engines"]) == (80, 20)
    # the recipe's cross-validation from NASA's text layout is the one the model file records
    recorded = artefact.load().header["cross_validation"]
    for key in ("alerted_ge50_share", "false_alarm_rate", "rul_rmse"):
        assert r[key] == pytest.approx(recorded[key], abs=1e-6)
    # the targets: >= 90% alerted >= 50 cycles early, <= 5% false alarms, RMSE <= 16.14
    assert r["alerted_ge50_share"] >= 0.9 and r["false_alarm_rate"] <= 0.05
    assert r["rul_rmse"] <= 16.14 and r["test_rul_rmse"] <= 16.14 and r["test_phm08_score"] >= 0


def test_without_a_model_the_test_split_is_scored_by_a_model_fitted_on_train(
        table: EngineTable, tmp_path: Path) -> None:
    small = write_trajectories(table.only(tuple(range(1, 13))), tmp_path / "train.txt")
    test, rul, _ = carve(table, (95, 96, 97), tmp_path)
    code, out, err = run("evaluate-engines", "--train", small, "--test", test, "--rul", rul,
                         "--folds", "3", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert (r["engines"], r["folds"], r["test_engines"]) == (12, 3, 3)
    text = summary(r)  # what the command prints without --json
    assert "12 engines, 3-fold" in text and "test split: 3 engines" in text


@pytest.mark.parametrize("case", ["missing", "malformed", "test-without-rul", "rul-count",
                                  "bad-model", "too-few-engines"])
def test_bad_input_is_refused_with_a_reason(case: str, nasa: dict[str, Path],
                                            table: EngineTable, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    args: list[str | Path] = ["evaluate-engines", "--train", nasa["train"]]
    want = ""
    if case == "missing":
        args[2], want = tmp_path / "absent.txt", "cannot read"
    elif case == "malformed":
        bad.write_text("1 1 0.5\n")
        args[2], want = bad, "columns"
    elif case == "test-without-rul":
        args += ["--test", nasa["test"]]
        want = "--test and --rul go together"
    elif case == "rul-count":
        bad.write_text("10\n20\n")
        args += ["--test", nasa["test"], "--rul", bad]
        want = "2 remaining lives for 20 test engines"
    elif case == "bad-model":
        bad.write_text("not a model")
        args += ["--test", nasa["test"], "--rul", nasa["rul"], "--model", bad]
        want = "not a fleetloop-engine-rul model"
    elif case == "too-few-engines":
        args[2] = write_trajectories(table.only((1, 2, 3)), tmp_path / "three.txt")
        want = "at least 5 engines"
    code, out, err = run(*args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and want in err


def test_train_engines_refuses_a_file_without_the_held_out_units(
        table: EngineTable, tmp_path: Path) -> None:
    part = write_trajectories(table.only(holdout.TRAIN_UNITS), tmp_path / "train.txt")
    code, _, err = run("train-engines", "--train", part, "--out", tmp_path / "m.npz")
    assert code == 2 and "lacks units [5, 10, 15, 20, 25]" in err
    assert not (tmp_path / "m.npz").exists()
