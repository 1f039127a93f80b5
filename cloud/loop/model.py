"""The remaining-useful-life regressor: gradient-boosted trees on the features, with the target
capped (a healthy engine's remaining life cannot be read from its sensors; the usual C-MAPSS
practice caps it near 125 cycles), and the maintenance alert as a threshold on its prediction.

scikit-learn fits the trees; the fitted trees are then copied into a Forest of plain arrays,
which is what predicts and what ships (artefact.py): a file of numbers, loadable without
pickle (loading a pickle runs code) and by any scikit-learn version, or none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .data import Floats, Ints

CHUNK = 512  # rows walked through the trees at once: stays in cache (measured: 4096 is 2x slower)


@dataclass(frozen=True)
class ModelParams:
    rul_cap: int = 125
    alert_rul: float = 70.0  # alert when the predicted remaining life is at or below this
    max_iter: int = 300
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alert_rul <= self.rul_cap:
            raise ValueError("alert_rul must be in (0, rul_cap]")
        if self.max_iter < 1 or self.max_leaf_nodes < 2 or self.min_samples_leaf < 1:
            raise ValueError("max_iter >= 1, max_leaf_nodes >= 2 and min_samples_leaf >= 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Forest:
    """Trees as flat arrays: node i splits on feature[i] at threshold[i] (x <= threshold goes
    left) unless leaf[i]; roots[t] is tree t's first node; the prediction is base + the sum of
    the leaves reached, clipped to [0, cap]."""

    feature: NDArray[np.int32]
    threshold: Floats
    left: NDArray[np.int32]
    right: NDArray[np.int32]
    leaf: NDArray[np.bool_]
    value: Floats
    roots: NDArray[np.int32]
    base: float
    cap: float
    depth: int  # deepest leaf: the walk's number of steps

    def predict(self, features: Floats) -> Floats:
        out = np.empty(len(features))
        for a in range(0, len(features), CHUNK):
            out[a:a + CHUNK] = self._walk(features[a:a + CHUNK])
        return np.clip(out, 0.0, self.cap)

    def _walk(self, x: Floats) -> Floats:
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        flat = np.ascontiguousarray(x).ravel()
        row_start = (np.arange(len(x)) * x.shape[1])[:, None]
        # children[2i] is node i's left child, children[2i + 1] its right one
        children = np.stack([self.left, self.right], axis=1).ravel()
        for _ in range(self.depth):
            # leaves point to themselves (see from_sklearn), so walking on is harmless
            go_right = flat.take(row_start + self.feature.take(node)) > self.threshold.take(node)
            node = children.take(2 * node + go_right)
        return self.base + self.value.take(node).sum(axis=1)

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"feature": self.feature, "threshold": self.threshold, "left": self.left,
                "right": self.right, "leaf": self.leaf, "value": self.value,
                "roots": self.roots}


def fit(features: Floats, rul: Ints, params: ModelParams) -> Forest:
    """Fit the trees on capped remaining life and copy them into a Forest."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # training only

    reg = HistGradientBoostingRegressor(
        max_iter=params.max_iter, learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes, min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization, early_stopping=False,
        random_state=params.seed)
    reg.fit(features, np.minimum(rul, params.rul_cap))
    return from_sklearn(reg, params.rul_cap)


def from_sklearn(reg: Any, cap: float) -> Forest:
    """A fitted single-output HistGradientBoostingRegressor (squared error, no categorical
    features, no missing values) as a Forest that predicts the same."""
    trees = [stage[0].nodes for stage in reg._predictors]
    sizes = [len(t) for t in trees]
    offsets = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int32)
    nodes = np.concatenate(trees)
    own = np.arange(len(nodes), dtype=np.int32)
    shift = np.repeat(offsets, sizes)
    leaf = nodes["is_leaf"].astype(bool)
    left = np.where(leaf, own, nodes["left"].astype(np.int64) + shift).astype(np.int32)
    right = np.where(leaf, own, nodes["right"].astype(np.int64) + shift).astype(np.int32)
    return Forest(
        feature=np.where(leaf, 0, nodes["feature_idx"]).astype(np.int32),
        threshold=np.where(leaf, np.inf, nodes["num_threshold"]).astype(np.float64),
        left=left, right=right, leaf=leaf,
        value=np.where(leaf, nodes["value"], 0.0).astype(np.float64),
        roots=offsets, base=float(np.asarray(reg._baseline_prediction).ravel()[0]),
        cap=float(cap), depth=int(nodes["depth"].max()))
