"""The churn list's decision: how much each of the churn model's signals weighs, learned.

cloud.loop.churn reads a person's activity as evidence (log-likelihood ratios of a decline
over steady use: how often, how hard, when, how long; and what fell by how much). Which of
those tell a leaver from someone in a busy spell (a few weeks of shorter, fewer rides that
pass) is a question for data, not for hand-set weights: gradient-boosted trees on the
evidence give the chance that someone is disengaging, and the list names those at or above a
threshold chosen out of fold. Trees, not a weighted sum: a logistic regression on the same
features scored within 0.01 of the trees out of fold but its precision on the scored fleets
swung by 0.03 with its regularization (docs/benchmarks.md).

The model ships as one small file, cloud/loop/models/churn-v3.npz (the engine model's layout,
cloud.loop.artefact: plain arrays and a JSON header, no pickle), with how it was made: the
simulated fleets it learned from, their seeds and week, disjoint from the seeds `fleetloop
bench churn` scores, and its out-of-fold figures. `fleetloop loop train-churn` rebuilds it; a
deployment with its own history of who left would refit it on that.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artefact import forest_of, read, write
from .errors import ModelError
from .model import Forest

FORMAT = "fleetloop-churn"
VERSION = 3
SHIPPED = Path(__file__).with_name("models") / "churn-v3.npz"
# What the model reads of a person's evidence (cloud.loop.churn.Evidence.features), in order.
FEATURES = (
    "decline_llr",  # how often: a decline over steady use
    "effort_llr",  # how hard: power or reps a minute sliding
    "wander_llr",  # when: start times spreading (personal)
    "minutes_llr",  # how long: the activities shortening
    "rate_factor",  # the rate now over before (1.0 steady)
    "effort_drop",  # the share of effort lost
    "minutes_drop",  # the share of length lost
    "wander_ratio",  # the start time's spread now over before
    "idle_days",  # days since the last activity
    "activities",  # activities in the history window
    "rate_before",  # activities a week before the decline's onset
    "mirror",  # 1.0 for a mirror, 0.0 for a bike
    "personal",  # 1.0 when the device shares personal data
    # What a policy's change did to the device (cloud.loop.forced: its arms and window).
    # Coaching makes a responder ride more and halts a decline where it was: the riding
    # since hides a decline that had begun, the riding before shows it.
    "coached_days",  # days since coaching reached the device (0: not coached)
    "coached_rate_change",  # activities a week since the coaching over before it (1.0: none)
    "before_coached_llr",  # how often, before the coaching: a decline over steady
    "before_coached_factor",  # ... and its rate then over before its onset (1.0: steady)
    "forced_days",  # days a policy's change set the effort (target power, programme)
    # The last weeks against the usual (cloud.loop.churn.Recent), and how long ago each
    # signal's onset was: a fade is a slope that goes on, a busy spell a step that passes.
    "decline_age", "effort_age", "minutes_age", "wander_age",  # days since each onset
    "minutes_7d", "minutes_14d", "minutes_21d", "minutes_last",  # log shift of the length
    "effort_7d", "effort_14d", "effort_21d", "effort_last",  # ... of the effort
    "rate_change_14d",  # activities a week in the last two weeks over before
    "measured_14d",  # activities with a length in the last two weeks
    "longest_gap",  # the longest pause of the last four weeks over the usual one
)


@dataclass(frozen=True)
class TreeParams:
    max_iter: int = 200
    learning_rate: float = 0.05
    max_leaf_nodes: int = 8
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class ChurnModel:
    forest: Forest  # predicts the chance of disengaging, clipped to [0, 1]
    threshold: float
    header: dict[str, Any] = field(default_factory=dict)

    def risks(self, x: np.ndarray) -> np.ndarray:
        """The chance (0..1) that each row's person is disengaging."""
        return self.forest.predict(np.asarray(x, dtype=float).reshape(-1, len(FEATURES)))

    def risk(self, x: Sequence[float]) -> float:
        return float(self.risks(np.asarray([x]))[0])


def save(path: Path, model: ChurnModel) -> int:
    meta = {**model.header, "format": FORMAT, "version": VERSION, "features": list(FEATURES),
            "threshold": model.threshold, "base": model.forest.base,
            "depth": model.forest.depth}
    return write(path, meta, model.forest)


def load(path: Path) -> ChurnModel:
    """The model at path; ModelError when it is not one this code can use."""
    header, arrays = read(path, FORMAT, VERSION, FEATURES)
    threshold = header.get("threshold")
    if not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise ModelError(f"{path}: 'threshold' must be a number between 0 and 1")
    forest = forest_of(header, arrays, 1.0, len(FEATURES), path)
    return ChurnModel(forest, float(threshold), header)


@functools.cache
def shipped() -> ChurnModel:
    """The model this release ships (read once per process)."""
    return load(SHIPPED)


def fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, header: dict[str, Any],
        params: TreeParams = TreeParams()) -> ChurnModel:
    """Fit the trees on rows x (FEATURES' order) with labels y (1.0: disengaging). The
    threshold is chosen on out-of-fold risks (leave one group, a simulated fleet, out),
    never on the rows that fitted the trees."""
    if len(np.unique(groups)) < 2:
        raise ValueError("the churn model needs at least two fleets (seeds): the threshold is "
                         "chosen on a fleet the trees did not see")
    if not 0 < y.sum() < len(y):
        raise ValueError("the training fleets need people who disengage and people who stay")
    oof = np.zeros(len(y))
    for g in np.unique(groups):
        held = groups == g
        oof[held] = _fit(x[~held], y[~held], params).predict(x[held])
    threshold, figures = best_threshold(oof, y)
    return ChurnModel(_fit(x, y, params), threshold,
                      {**header, "params": asdict(params), "out_of_fold": figures,
                       "rows": int(len(y)), "positives": int(y.sum())})


def _fit(x: np.ndarray, y: np.ndarray, params: TreeParams) -> Forest:
    """Boosted regression trees on the 0/1 label (squared error: their sum estimates the
    chance directly), copied into a Forest of plain arrays."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # training only

    from .model import from_sklearn

    reg = HistGradientBoostingRegressor(
        max_iter=params.max_iter, learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes, min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization, early_stopping=False,
        random_state=params.seed)
    reg.fit(x, y)
    return from_sklearn(reg, 1.0)


def best_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    """The threshold (of 0.05 .. 0.95 by 0.01) where the list's precision and recall are
    best together: the highest of the two's minimum (customer success wants both: a list
    they can trust and one that misses few), and its figures."""
    best: tuple[float, float, dict[str, float]] = (-1.0, 0.5, {})
    for t in np.round(np.arange(0.05, 0.951, 0.01), 2):
        listed = p >= t
        tp, n_listed, n_pos = float((listed & (y > 0)).sum()), int(listed.sum()), int((y > 0).sum())
        precision = tp / n_listed if n_listed else 0.0
        recall = tp / n_pos if n_pos else 0.0
        if min(precision, recall) > best[0]:
            best = (min(precision, recall), float(t),
                    {"precision": round(precision, 3), "recall": round(recall, 3)})
    return best[1], best[2]
