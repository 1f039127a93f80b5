"""`fleetloop loop`: the keep-it-optimized loop's commands, thin over cloud.loop.

Exit codes: 0 done; 2 bad usage or a file that cannot be used (its reason on stderr).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cloud.loop.data import EngineTable, from_rows, read_rul, read_trajectories
from cloud.loop.errors import LoopError
from cloud.loop.evaluation import FOLDS

app = typer.Typer(
    help="The loop's models: evaluate the engines' remaining-life model on NASA's C-MAPSS"
    " files and rebuild it; rebuild the churn list's model from simulated fleets.\n\n"
    "Example: fleetloop loop evaluate-engines --train train_FD001.txt --json",
    no_args_is_help=True,
)
EXIT_USAGE = 2
TrainOpt = Annotated[Path | None, typer.Option(
    "--train", help="NASA's training file (train_FD001.txt layout); default: the FD001 training"
    " data this repository carries for the engine profile.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def training_table(path: Path | None) -> EngineTable:
    """NASA's text file, or the packed copy of FD001 the device profile replays."""
    if path is not None:
        return read_trajectories(path)
    from fleetloop.fleet.engines import load_trajectories

    data = load_trajectories()
    rows = np.array([row for unit in sorted(data) for row in data[unit]])
    return from_rows(rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2:],
                     "the packed FD001 data")


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"


@app.command("evaluate-engines")
def evaluate_engines_cmd(
    train: TrainOpt = None,
    test: Annotated[Path | None, typer.Option(
        help="Test trajectories cut short (test_FD001.txt layout); needs --rul.")] = None,
    rul: Annotated[Path | None, typer.Option(
        help="True remaining life of each test engine (RUL_FD001.txt layout); needs --test.")] = None,
    model: Annotated[Path | None, typer.Option(
        help="Score the test split with this model file (and cross-validate its parameters)"
        " instead of a model fitted on --train.")] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds (by engine).")] = FOLDS,
    json_out: JsonOpt = False,
) -> None:
    """Cross-validate the remaining-life model by engine on the training trajectories (no engine
    in two folds): the share of engines alerted at least 50 cycles before failure, the share
    alerted more than 150 cycles before (false alarms), and the RUL RMSE at random cuts scored
    as NASA's test split is; with --test and --rul, the RMSE and PHM08 score on that split.

    Example: fleetloop loop evaluate-engines --train train_FD001.txt --test test_FD001.txt --rul RUL_FD001.txt --json
    """
    from cloud.loop.artefact import load
    from cloud.loop.model import ModelParams
    from cloud.loop.pipeline import evaluate_engines

    if (test is None) != (rul is None):
        raise _fail("--test and --rul go together (NASA's test trajectories and their true RULs)")
    try:
        shipped = load(model) if model is not None else None
        table = training_table(train)
        split = None
        if test is not None and rul is not None:
            test_table = read_trajectories(test)
            split = (test_table, read_rul(rul, len(test_table.unit_ids)))
        params = shipped.params if shipped is not None else ModelParams()
        result = evaluate_engines(table, params, folds, split,
                                  shipped.forest if shipped is not None else None)
    except (LoopError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if json_out:
        typer.echo(json.dumps(result))
    else:
        typer.echo(_summary(result))


def _summary(r: dict[str, Any]) -> str:
    lines = [f"{r['engines']} engines, {r['folds']}-fold cross-validation by engine "
             f"(alert at predicted RUL <= {r['alert_rul']:g}):",
             f"  alerted >= 50 cycles before failure: {_percent(r['alerted_ge50_share'])}"
             f" (never alerted: {r['never_alerted']}, median lead {r['median_lead_cycles']:g})",
             f"  false alarms (alerted > 150 cycles before failure): "
             f"{_percent(r['false_alarm_rate'])} of engines",
             f"  RUL RMSE at {r['rul_rmse_cuts']} random cuts (NASA's way): {r['rul_rmse']:.2f}"]
    if "test_engines" in r:
        lines.append(f"test split: {r['test_engines']} engines, RUL RMSE "
                     f"{r['test_rul_rmse']:.2f}, PHM08 score {r['test_phm08_score']:.1f}")
    return "\n".join(lines)


@app.command("train-engines")
def train_engines_cmd(
    out: Annotated[Path, typer.Option(help="Where the model file is written (.npz).")],
    train: TrainOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the shipped remaining-life model from FD001's training units (the fleet's 20
    held-out units never train it), with its cross-validated figures and its figures on the
    held-out units in the file's header.

    Example: fleetloop loop train-engines --out cloud/loop/models/engine-rul-v1.npz
    """
    from cloud.loop.artefact import save
    from cloud.loop.model import ModelParams
    from cloud.loop.pipeline import build_shipped

    params = ModelParams()
    try:
        forest, header = build_shipped(training_table(train), params)
        size = save(out, forest, params, header)
    except (LoopError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    header["bytes"] = size
    if json_out:
        typer.echo(json.dumps(header))
        return
    cv, held = header["cross_validation"], header["held_out"]
    typer.echo(f"wrote {out} ({size} bytes), trained on {len(header['train_units'])} units")
    typer.echo(f"cross-validated: {_percent(cv['alerted_ge50_share'])} alerted >= 50 cycles "
               f"early, {_percent(cv['false_alarm_rate'])} false alarms, RUL RMSE "
               f"{cv['rul_rmse']:.2f}")
    typer.echo(f"held-out units: {_percent(held['alerted_ge50_share'])} alerted >= 50 cycles "
               f"early, {_percent(held['false_alarm_rate'])} false alarms, RUL RMSE "
               f"{held['rul_rmse']:.2f}")


def _integers(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise _fail(f"{text!r} is not a comma-separated list of integers") from None
    if not seeds:
        raise _fail(f"{text!r}: give at least one number")
    return seeds


@app.command("train-churn")
def train_churn_cmd(
    out: Annotated[Path, typer.Option(help="Where the model file is written (.npz).")],
    seeds: Annotated[str, typer.Option(
        help="Simulated fleets to learn from (never the seeds the benchmarks score: 1-3, 10, "
        "11).")] = "4,5,6,7,8,9,12,13,14,15,16,17,18,19,20,21,22,23,24,25",
    weeks: Annotated[str, typer.Option(
        "--at-weeks", help="Weeks of the 12-week span at which a list is made.")] = "10",
    bikes: Annotated[int, typer.Option(min=10, max=5000, help="Riders per fleet.")] = 500,
    mirrors: Annotated[int, typer.Option(min=0, max=5000, help="Mirror users per fleet.")] = 100,
    intervals: Annotated[str, typer.Option(
        help="Seconds between samples while in use; each fleet is played at each.")] = "60,300",
    with_policies: Annotated[bool, typer.Option(
        "--with-policies/--without-policies",
        help="Play each fleet once more with coaching and an over-hard target reaching some "
        "riders part-way, as the loop's policies do (the model reads what a policy's change "
        "did; docs/loop.md).")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the churn list's model from simulated fleets whose truth is known: boosted
    trees on the churn signals, and the threshold chosen out of fold (a fleet at a time).
    About half a minute a fleet, its playings together.

    Example: fleetloop loop train-churn --out cloud/loop/models/churn-v3.npz
    """
    from cloud.loop.churn_model import save
    from fleetloop.churn_train import train

    at_weeks = _integers(weeks)
    if not all(2 <= w <= 10 for w in at_weeks):
        raise _fail("--at-weeks: each week must be in 2..10 (the truth two weeks later)")
    every = _integers(intervals)
    if not all(1 <= i <= 3600 for i in every):
        raise _fail("--intervals: each must be 1..3600 seconds")
    try:
        model = train(_integers(seeds), at_weeks, bikes, mirrors, every, with_policies,
                      log=lambda line: None if json_out else typer.echo(line))
        size = save(out, model)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    if json_out:
        typer.echo(json.dumps({**model.header, "threshold": model.threshold, "bytes": size}))
        return
    oof = model.header["out_of_fold"]
    typer.echo(f"wrote {out} ({size} bytes): {model.header['rows']} rows, threshold "
               f"{model.threshold}, out of fold precision {oof['precision']}, recall "
               f"{oof['recall']}")
