"""What the commands do: evaluate the recipe on a training file (and a test split), and build
the shipped model from the training units (holdout.py) with the header that pins it.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from .data import EngineTable, Ints
from .evaluation import FOLDS, alert_figures, cross_validate, cut_rmse
from .features import features
from .holdout import FLEET_UNITS, TRAIN_UNITS
from .model import Forest, ModelParams, fit
from .nasa import score_test_split

LIBRARIES = ("numpy", "scipy", "scikit-learn")


def evaluate_engines(train: EngineTable, params: ModelParams, folds: int = FOLDS,
                     test: tuple[EngineTable, Ints] | None = None,
                     forest: Forest | None = None) -> dict[str, Any]:
    """Cross-validated figures on `train`; with a test split, its figures too, from `forest`
    when given (a shipped model) or else from a model fitted on all of `train`."""
    x = features(train)
    out: dict[str, Any] = cross_validate(train, x, params, folds).as_dict()
    out["alert_rul"] = params.alert_rul
    if test is not None:
        model = forest if forest is not None else fit(x, train.rul(), params)
        out.update(score_test_split(model, *test).as_dict())
    return out


def missing_units(table: EngineTable, wanted: tuple[int, ...]) -> list[int]:
    have = set(table.unit_ids.tolist())
    return [u for u in wanted if u not in have]


def build_shipped(table: EngineTable, params: ModelParams) -> tuple[Forest, dict[str, Any]]:
    """Fit on TRAIN_UNITS of the full FD001 table; the header records the recipe's
    cross-validated figures on those units and the model's own figures on FLEET_UNITS."""
    missing = missing_units(table, TRAIN_UNITS + FLEET_UNITS)
    if missing:
        raise ValueError(f"the training file lacks units {missing[:5]}: the shipped model is "
                         "built from all 100 FD001 units (80 to train, 20 held out)")
    train, held = table.only(TRAIN_UNITS), table.only(FLEET_UNITS)
    x_train = features(train)
    cv = cross_validate(train, x_train, params)
    forest = fit(x_train, train.rul(), params)
    predicted = forest.predict(features(held))
    alerts = alert_figures(held, predicted, params.alert_rul)
    header = {
        "data_sha256": table.sha256(), "data_rows": len(table.units),
        "train_units": list(TRAIN_UNITS), "held_out_units": list(FLEET_UNITS),
        "libraries": library_versions(),
        "cross_validation": cv.as_dict(),
        "held_out": {"engines": alerts.engines,
                     "alerted_ge50_share": alerts.alerted_ge50_share,
                     "false_alarm_rate": alerts.false_alarm_rate,
                     "rul_rmse": cut_rmse(held, predicted)},
    }
    return forest, header


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(),
            **{name: metadata.version(name) for name in LIBRARIES}}
