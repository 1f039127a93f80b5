"""Features are causal and the vectorised slopes are least-squares slopes; the shipped Forest
predicts what scikit-learn's trees predict; the model file round-trips and a bad one is a clear
ModelError."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from cloud.loop import artefact, features, model
from cloud.loop.data import SENSORS, from_rows
from cloud.loop.errors import ModelError

RNG = np.random.default_rng(7)


def random_table(lives: list[int]):  # type: ignore[no-untyped-def]
    u = np.repeat(np.arange(1, len(lives) + 1), lives).astype(np.int64)
    c = np.concatenate([np.arange(1, n + 1) for n in lives]).astype(np.int64)
    drift = c[:, None] * RNG.normal(0, 0.05, (1, len(SENSORS)))
    return from_rows(u, c, np.asarray(features.REFERENCE) + drift
                     + RNG.normal(0, 1, (len(u), len(SENSORS))), "random")


def test_rolling_slope_is_the_least_squares_slope_over_the_window() -> None:
    t = random_table([70, 5, 40])
    start = features.unit_starts(t.units)
    slopes = features.rolling_slope(t.sensors, start, 20)
    for i in (0, 1, 2, 19, 20, 69, 70, 72, 74, 75, 100, 114):
        lo = max(i - 19, int(start[i]))
        if i == lo:
            assert (slopes[i] == 0).all()  # one point: no slope yet
            continue
        want = np.polyfit(t.cycles[lo:i + 1], t.sensors[lo:i + 1], 1)[0]
        assert slopes[i] == pytest.approx(want, rel=1e-7, abs=1e-9)


def test_rolling_mean_and_ewm_stay_inside_their_unit() -> None:
    t = random_table([30, 30])
    start = features.unit_starts(t.units)
    mean = features.rolling_mean(t.sensors, start, 10)
    assert mean[30] == pytest.approx(t.sensors[30])  # the second unit's first row: itself
    assert mean[35] == pytest.approx(t.sensors[30:36].mean(axis=0))
    level = features.ewm(t.sensors, t.units, 0.1)
    assert level[30] == pytest.approx(t.sensors[30])
    assert level[31] == pytest.approx(0.9 * t.sensors[30] + 0.1 * t.sensors[31])


def test_a_rows_features_do_not_depend_on_later_cycles() -> None:
    t = random_table([120, 90, 150])
    whole = features.features(t)
    cut = t.cycles <= 60
    assert whole.shape[1] == len(features.NAMES)
    assert np.allclose(features.features(t.select(cut)), whole[cut], rtol=0, atol=1e-6)


def small_fit() -> tuple[HistGradientBoostingRegressor, np.ndarray]:
    x = RNG.normal(size=(600, len(features.NAMES)))
    y = np.clip(60 + 30 * x[:, 1] - 20 * x[:, 5] + RNG.normal(0, 5, 600), 0, 125)
    reg = HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=15, random_state=0)
    return reg.fit(x, y), x


def test_the_forest_predicts_what_scikit_learn_predicts() -> None:
    reg, x = small_fit()
    forest = model.from_sklearn(reg, cap=125)
    wide = np.vstack([x, x * 10])  # far outside the training range too
    assert np.allclose(forest.predict(wide), np.clip(reg.predict(wide), 0, 125),
                       rtol=0, atol=1e-9)


def test_the_model_file_round_trips_and_its_bytes_repeat(tmp_path: Path) -> None:
    reg, x = small_fit()
    forest = model.from_sklearn(reg, cap=125)
    params = model.ModelParams()
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    artefact.save(a, forest, params, {"note": "test"})
    artefact.save(b, forest, params, {"note": "test"})
    assert a.read_bytes() == b.read_bytes()
    back = artefact.load(a)
    assert back.params == params and back.header["note"] == "test"
    assert (back.forest.predict(x) == forest.predict(x)).all()


def _rewrite(src: Path, dst: Path, member: str, array: np.ndarray) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            body = zin.read(item)
            if item == member + ".npy":
                buf = io.BytesIO()
                np.lib.format.write_array(buf, array, allow_pickle=True)
                body = buf.getvalue()
            zout.writestr(item, body)


def test_bad_model_files_are_refused(tmp_path: Path) -> None:
    good = artefact.SHIPPED
    with pytest.raises(ModelError, match="cannot read"):
        artefact.load(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not a model")
    with pytest.raises(ModelError, match="not a fleetloop-engine-rul model"):
        artefact.load(tmp_path / "text.npz")
    left = artefact.load(good).forest.left.copy()
    left[0] = 10**6
    _rewrite(good, tmp_path / "damaged.npz", "left", left)
    with pytest.raises(ModelError, match="damaged"):
        artefact.load(tmp_path / "damaged.npz")
    _rewrite(good, tmp_path / "pickle.npz", "value", np.array([{"x": 1}], dtype=object))
    with pytest.raises(ModelError, match="not a fleetloop-engine-rul model"):
        artefact.load(tmp_path / "pickle.npz")  # object arrays would need pickle: never loaded
    header = np.frombuffer(b'{"format": "other", "version": 9}', dtype=np.uint8)
    _rewrite(good, tmp_path / "other.npz", "header", header)
    with pytest.raises(ModelError, match="unreadable model header"):
        artefact.load(tmp_path / "other.npz")
