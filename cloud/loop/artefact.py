"""The shipped engine model as one versioned file: the Forest's arrays and a JSON header in an .npz
(numbers only: np.load without pickle). The header records what the model is and how it was
made: format and version, feature names, parameters, the units it trained on and the ones
held out for the fleet, the training data's sha256, the library versions, and the figures of
its recipe (cross-validated) and of the model itself on the held-out units, so a test can
rebuild it and see that nothing drifted.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ModelError
from .features import NAMES
from .model import Forest, ModelParams

FORMAT = "fleetloop-engine-rul"
VERSION = 1
SHIPPED = Path(__file__).with_name("models") / "engine-rul-v1.npz"
MAX_BYTES = 16 * 1024 * 1024  # a model file larger than this is not one of ours
ARRAYS = ("feature", "threshold", "left", "right", "leaf", "value", "roots")


@dataclass(frozen=True)
class Artefact:
    forest: Forest
    params: ModelParams
    header: dict[str, Any]


def save(path: Path, forest: Forest, params: ModelParams, header: dict[str, Any]) -> int:
    """Write the engine model's file (compressed, deterministic bytes); returns its size."""
    meta = {"format": FORMAT, "version": VERSION, "features": list(NAMES),
            "params": params.as_dict(), "base": forest.base, "depth": forest.depth, **header}
    return write(path, meta, forest)


def write(path: Path, meta: dict[str, Any], forest: Forest) -> int:
    """A forest and its JSON header as one .npz (fixed member times: the same model gives the
    same bytes); returns its size."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in (("header", np.frombuffer(
                json.dumps(meta, indent=1, sort_keys=True).encode(), dtype=np.uint8)),
                *forest.arrays().items()):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(2008, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return len(buf.getvalue())


def load(path: Path = SHIPPED) -> Artefact:
    """The engine model at path; ModelError when it is not one this code can use."""
    header, arrays = read(path, FORMAT, VERSION, NAMES)
    try:
        params = ModelParams(**header["params"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: unreadable model header ({e})") from None
    return Artefact(forest_of(header, arrays, float(params.rul_cap), len(NAMES), path),
                    params, header)


def read(path: Path, fmt: str, version: int, features: tuple[str, ...]
         ) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """The header and tree arrays of a model file of this format, version and features;
    ModelError when it is not one."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ModelError(f"{path}: larger than {MAX_BYTES} bytes, not a model file")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ("header", *ARRAYS)}
    except ModelError:
        raise
    except OSError as e:
        raise ModelError(f"cannot read model {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{path}: not a {fmt} model file ({e})") from None
    try:
        header = json.loads(arrays.pop("header").tobytes())
        int(header["depth"]), float(header["base"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: unreadable model header ({e})") from None
    if header.get("format") != fmt or header.get("version") != version:
        raise ModelError(f"{path}: format {header.get('format')} v{header.get('version')}, "
                         f"this code reads {fmt} v{version}")
    if header.get("features") != list(features):
        raise ModelError(f"{path}: built on other features than this code computes")
    return header, arrays


def forest_of(header: dict[str, Any], arrays: dict[str, NDArray[Any]], cap: float,
              n_features: int, path: Path) -> Forest:
    forest = Forest(feature=arrays["feature"].astype(np.int32),
                    threshold=arrays["threshold"].astype(np.float64),
                    left=arrays["left"].astype(np.int32), right=arrays["right"].astype(np.int32),
                    leaf=arrays["leaf"].astype(bool), value=arrays["value"].astype(np.float64),
                    roots=arrays["roots"].astype(np.int32), base=float(header["base"]),
                    cap=cap, depth=int(header["depth"]))
    _check(forest, n_features, path)
    return forest


def _check(forest: Forest, n_features: int, path: Path) -> None:
    """Indices in range and every walk ending on a leaf: a damaged file fails here, not as an
    IndexError in the middle of a prediction."""
    n = len(forest.value)
    sizes = {len(forest.threshold), len(forest.left), len(forest.right), len(forest.leaf),
             len(forest.feature)}
    ok = sizes == {n} and n > 0 and len(forest.roots) > 0 and 0 <= forest.depth <= 64
    ok = ok and all(0 <= int(a.min()) and int(a.max()) < n
                    for a in (forest.left, forest.right, forest.roots))
    ok = ok and 0 <= int(forest.feature.min()) and int(forest.feature.max()) < n_features
    if ok:
        node = forest.roots.copy()
        for _ in range(forest.depth):
            node = np.where(forest.leaf[node], node, forest.left[node])
        ok = bool(forest.leaf[node].all())
    if not ok:
        raise ModelError(f"{path}: damaged model (tree arrays out of range)")
