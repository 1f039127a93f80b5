"""How well the remaining-life model does, measured the ways that matter to a fleet operator
and the way NASA's test split is scored.

- Alerts: an engine is alerted at its first cycle whose predicted RUL is <= the alert
  threshold. `alerted_ge50_share`: share of engines whose first alert came >= 50 cycles before
  failure. `false_alarm_rate`: share of ENGINES (not of alert-cycles) that were alerted at any
  cycle more than 150 cycles before failure; an engine counts once however many such cycles.
- `rul_rmse`: each held-out engine cut at CUTS_PER_ENGINE random cycles, as NASA cut its test
  trajectories (true remaining life 7..145 cycles, at least 31 cycles observed: FD001's test
  split spans exactly those), the prediction at each cut against the true remaining life,
  uncapped. Cuts are drawn from a fixed seed, so figures repeat.
- PHM08 score: sum over engines of exp(-d/13) - 1 for early predictions (d < 0) and
  exp(d/10) - 1 for late ones, d = predicted - true: a late prediction costs more.
- Cross-validation is by engine (GroupKFold): no engine has rows in two folds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .data import EngineTable, Floats, Ints
from .model import ModelParams, fit

EARLY_CYCLES = 50  # an alert this many cycles ahead leaves time to plan the shop visit
FALSE_ALARM_CYCLES = 150  # an alert earlier than this pulls a healthy engine off the wing
CUT_RUL = (7, 145)  # NASA's FD001 test split: true RULs from 7 to 145 cycles
MIN_OBSERVED = 31  # ... and its shortest cut trajectory has 31 cycles
CUTS_PER_ENGINE = 5
FOLDS = 5
SEED = 2008  # the PHM08 challenge year: any fixed number does


def phm08_score(predicted: ArrayLike, true: ArrayLike) -> float:
    """The PHM08 challenge's asymmetric score (lower is better; 0 is perfect)."""
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13), np.expm1(d / 10))))


def rmse(predicted: ArrayLike, true: ArrayLike) -> float:
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d)))


def cut_rows(table: EngineTable, seed: int = SEED, cuts: int = CUTS_PER_ENGINE) -> Ints:
    """Row indices of the cuts of every run-to-failure engine in the table (see the module's
    docstring); one engine's cuts are distinct cycles."""
    rng = np.random.default_rng(seed)
    lives = table.lives()
    firsts = np.r_[0, np.cumsum(lives)[:-1]]
    rows: list[int] = []
    for first, life in zip(firsts.tolist(), lives.tolist(), strict=True):
        lo, hi = CUT_RUL[0], min(CUT_RUL[1], life - MIN_OBSERVED)
        if hi < lo:  # too short to cut as NASA did: not scored
            continue
        ruls = rng.choice(np.arange(lo, hi + 1), size=min(cuts, hi - lo + 1), replace=False)
        rows.extend(first + life - 1 - int(r) for r in np.sort(ruls))
    return np.array(rows, dtype=np.int64)


def cut_rmse(table: EngineTable, predicted: Floats, seed: int = SEED) -> float:
    """`rul_rmse` of per-row predictions of a run-to-failure table."""
    rows = cut_rows(table, seed)
    return rmse(predicted[rows], table.rul()[rows])


@dataclass(frozen=True)
class AlertFigures:
    engines: int
    alerted_ge50_share: float
    false_alarm_rate: float
    never_alerted: int
    median_lead_cycles: float  # cycles before failure of the first alert, over alerted engines


def alert_figures(table: EngineTable, predicted: Floats, threshold: float) -> AlertFigures:
    """Alert figures of per-row predictions of a run-to-failure table."""
    rul = table.rul()
    alert = predicted <= threshold
    index = np.searchsorted(table.unit_ids, table.units)
    n = len(table.unit_ids)
    # lead of the first alert = the largest RUL at which the engine was alerted
    lead = np.full(n, -1, dtype=np.int64)
    np.maximum.at(lead, index[alert], rul[alert])
    alerted = lead >= 0
    return AlertFigures(
        engines=n,
        alerted_ge50_share=float(np.mean(lead >= EARLY_CYCLES)),
        false_alarm_rate=float(np.mean(lead > FALSE_ALARM_CYCLES)),
        never_alerted=int(np.sum(~alerted)),
        median_lead_cycles=float(np.median(lead[alerted])) if alerted.any() else 0.0)


def engine_folds(units: Ints, folds: int = FOLDS) -> Iterator[tuple[Ints, Ints]]:
    """(train rows, held-out rows) per fold, grouped by engine unit."""
    from sklearn.model_selection import GroupKFold  # training only: keeps the CLI's start light

    splitter = GroupKFold(n_splits=folds)
    for train, held in splitter.split(np.zeros(len(units)), groups=units):
        yield train.astype(np.int64), held.astype(np.int64)


def out_of_fold(table: EngineTable, features: Floats, params: ModelParams,
                folds: int = FOLDS) -> Floats:
    """Every row's prediction by a model that never saw its engine."""
    predicted = np.empty(len(table.units))
    rul = table.rul()
    for train, held in engine_folds(table.units, folds):
        predicted[held] = fit(features[train], rul[train], params).predict(features[held])
    return predicted


@dataclass(frozen=True)
class CrossValidation:
    engines: int
    folds: int
    alerted_ge50_share: float
    false_alarm_rate: float
    never_alerted: int
    median_lead_cycles: float
    rul_rmse: float
    rul_rmse_cuts: int
    rul_rmse_all_cycles_capped: float  # the figure many papers quote on training data

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cross_validate(table: EngineTable, features: Floats, params: ModelParams,
                   folds: int = FOLDS) -> CrossValidation:
    if len(table.unit_ids) < folds:
        raise ValueError(f"cross-validation in {folds} folds needs at least {folds} engines, "
                         f"got {len(table.unit_ids)}")
    predicted = out_of_fold(table, features, params, folds)
    alerts = alert_figures(table, predicted, params.alert_rul)
    rows = cut_rows(table)
    capped = np.minimum(table.rul(), params.rul_cap)
    return CrossValidation(
        engines=alerts.engines, folds=folds,
        alerted_ge50_share=alerts.alerted_ge50_share, false_alarm_rate=alerts.false_alarm_rate,
        never_alerted=alerts.never_alerted, median_lead_cycles=alerts.median_lead_cycles,
        rul_rmse=rmse(predicted[rows], table.rul()[rows]), rul_rmse_cuts=len(rows),
        rul_rmse_all_cycles_capped=rmse(predicted, capped))

