"""Scoring a test split in NASA's layout: trajectories cut short (test_FD001.txt) and one true
remaining life per engine (RUL_FD001.txt, in unit order). The prediction at each engine's last
observed cycle is scored against its true remaining life, uncapped, as published results are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .data import EngineTable, Floats, Ints
from .evaluation import phm08_score, rmse
from .features import features
from .model import Forest


@dataclass(frozen=True)
class TestFigures:
    test_engines: int
    test_rul_rmse: float
    test_phm08_score: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_rows(table: EngineTable) -> Ints:
    """Index of each unit's last row, in unit order."""
    return np.cumsum(table.lives()) - 1


def predict_at_cut(forest: Forest, table: EngineTable) -> Floats:
    """The predicted remaining life of each test engine at its last observed cycle."""
    return forest.predict(features(table)[last_rows(table)])


def score_test_split(forest: Forest, table: EngineTable, true_rul: Ints) -> TestFigures:
    predicted = predict_at_cut(forest, table)
    return TestFigures(test_engines=len(predicted), test_rul_rmse=rmse(predicted, true_rul),
                       test_phm08_score=phm08_score(predicted, true_rul))
