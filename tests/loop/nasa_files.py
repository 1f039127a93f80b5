"""Files in NASA's C-MAPSS layout carved from the training engines, for the test-split path:
a training file of some units, a test file of others cut short (renumbered 1..n, as NASA's
are) and the RUL file of their true remaining lives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud.loop.data import COLUMNS, NASA_COLUMNS, EngineTable


def write_trajectories(table: EngineTable, path: Path, units: np.ndarray | None = None) -> Path:
    """26 columns per row: unit, cycle, settings and the sensors this code ignores set to 0."""
    rows = np.zeros((len(table.units), NASA_COLUMNS))
    rows[:, 0] = table.units if units is None else units
    rows[:, 1] = table.cycles
    rows[:, list(COLUMNS)] = table.sensors
    lines = (" ".join(f"{int(v)}" if i < 2 else f"{v:.10g}" for i, v in enumerate(r))
             for r in rows)
    path.write_text("\n".join(lines) + "\n")
    return path


def carve(table: EngineTable, units: tuple[int, ...], tmp: Path,
          seed: int = 11) -> tuple[Path, Path, list[int]]:
    """test_FD001.txt and RUL_FD001.txt from `units` of a run-to-failure table: each cut at a
    random cycle with 7..145 cycles left and at least 31 observed, like NASA's."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(table.units), dtype=bool)
    renumbered = np.zeros(len(table.units), dtype=np.int64)
    ruls = []
    lives = dict(zip(table.unit_ids.tolist(), table.lives().tolist(), strict=True))
    for new, unit in enumerate(units, 1):
        life = lives[unit]
        rul = int(rng.integers(7, min(145, life - 31) + 1))
        rows = (table.units == unit) & (table.cycles <= life - rul)
        keep |= rows
        renumbered[rows] = new
        ruls.append(rul)
    test = write_trajectories(table.select(keep), tmp / "test_FD001.txt", renumbered[keep])
    rul_file = tmp / "RUL_FD001.txt"
    rul_file.write_text("".join(f"{r}\n" for r in ruls))
    return test, rul_file, ruls
