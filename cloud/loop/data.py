"""NASA's C-MAPSS files as one table: engine unit, cycle and the 14 informative sensors.

The layout is NASA's (train_FD001.txt, test_FD001.txt): whitespace-separated rows of 26
columns, unit, cycle, 3 operational settings, sensors s1..s21. Only the 14 sensors that change
at FD001's single operating condition are kept, under the metric names the engine profile
reports (device/profiles/engine.py SENSORS and COLUMNS; a test pins them equal, the cloud does
not import the device). RUL files hold one true remaining life per engine, in unit order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .errors import EngineDataError

SENSORS = ("t24", "t30", "t50", "p30", "nf", "nc", "ps30", "phi", "nrf", "nrc", "bpr", "htbleed",
           "w31", "w32")
COLUMNS = (6, 7, 8, 11, 12, 13, 15, 16, 17, 18, 19, 21, 24, 25)  # 0-based, in NASA's rows
NASA_COLUMNS = 26
MAX_ID = 10**9  # unit ids and cycles: far beyond any engine, well inside int64
MAX_ROWS = 2_000_000  # far above any C-MAPSS subset (FD004 train has 61,249): a bound, not a limit

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class EngineTable:
    """Rows sorted by (unit, cycle); each unit's cycles run 1, 2, ... without gaps."""

    units: Ints  # (n,)
    cycles: Ints  # (n,)
    sensors: Floats  # (n, len(SENSORS))

    def __post_init__(self) -> None:
        n = len(self.units)
        if len(self.cycles) != n or self.sensors.shape != (n, len(SENSORS)):
            raise EngineDataError("engine table columns differ in length")

    @property
    def unit_ids(self) -> Ints:
        return np.unique(self.units)

    def lives(self) -> Ints:
        """Cycles observed per unit, in unit_ids order (the last one is the failure in a
        training file, the cut in a test file)."""
        return np.bincount(np.searchsorted(self.unit_ids, self.units))

    def rul(self) -> Ints:
        """Remaining life at each row of a run-to-failure table: last cycle of its unit - cycle."""
        last = self.lives()[np.searchsorted(self.unit_ids, self.units)]
        return last - self.cycles

    def select(self, mask: NDArray[np.bool_]) -> EngineTable:
        return EngineTable(self.units[mask], self.cycles[mask], self.sensors[mask])

    def only(self, units: tuple[int, ...] | list[int] | Ints) -> EngineTable:
        return self.select(np.isin(self.units, np.asarray(units)))

    def sha256(self) -> str:
        """Of the table's values, not of a file: the same from NASA's text and from the packed
        copy the device carries, so an artefact names its data whatever file it came from."""
        h = hashlib.sha256()
        for part in (self.units.astype("<i8"), self.cycles.astype("<i8"),
                     self.sensors.astype("<f8")):
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()


def from_rows(units: Ints, cycles: Ints, sensors: Floats, source: str) -> EngineTable:
    """A table from columns, checked: sorted, cycles 1..n per unit, finite values."""
    if len(units) == 0:
        raise EngineDataError(f"{source}: no rows")
    order = np.lexsort((cycles, units))
    units, cycles, sensors = units[order], cycles[order], sensors[order]
    if (units < 1).any() or not np.isfinite(sensors).all():
        raise EngineDataError(f"{source}: unit ids must be >= 1 and sensor values finite")
    first = np.r_[True, units[1:] != units[:-1]]
    expected = np.where(first, 1, np.r_[0, cycles[:-1]] + 1)
    bad = np.flatnonzero(cycles != expected)
    if bad.size:
        i = bad[0]
        raise EngineDataError(f"{source}: unit {units[i]} does not run from cycle 1 without gaps "
                              f"or repeats (cycle {cycles[i]})")
    return EngineTable(units.astype(np.int64), cycles.astype(np.int64),
                       np.ascontiguousarray(sensors, dtype=np.float64))


def read_trajectories(path: Path) -> EngineTable:
    """NASA's train or test file; EngineDataError says what is wrong with a bad one."""
    text = _read_text(path)
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise EngineDataError(f"{path}: empty, expected NASA's trajectory rows")
    if len(rows) > MAX_ROWS:
        raise EngineDataError(f"{path}: more than {MAX_ROWS} rows")
    for i, row in enumerate(rows, 1):
        if len(row) != NASA_COLUMNS:
            raise EngineDataError(f"{path}: line {i} has {len(row)} columns, expected "
                                  f"{NASA_COLUMNS} (unit, cycle, 3 settings, 21 sensors)")
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise EngineDataError(f"{path}: not numbers ({e})") from None
    ids = values[:, :2]
    if not np.isfinite(ids).all() or (ids != np.round(ids)).any() \
            or (ids < 1).any() or (ids > MAX_ID).any():
        raise EngineDataError(f"{path}: unit and cycle must be whole numbers 1..{MAX_ID}")
    return from_rows(ids[:, 0].astype(np.int64), ids[:, 1].astype(np.int64),
                     values[:, list(COLUMNS)], str(path))


def read_rul(path: Path, engines: int) -> Ints:
    """NASA's RUL file: one true remaining life (whole cycles >= 0) per test engine."""
    lines = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    try:
        values = [int(line.split()[0]) for line in lines]
    except ValueError:
        raise EngineDataError(f"{path}: expected one whole number of cycles per line") from None
    if any(len(line.split()) != 1 for line in lines) or any(v < 0 for v in values):
        raise EngineDataError(f"{path}: expected one whole number of cycles (>= 0) per line")
    if len(values) != engines:
        raise EngineDataError(f"{path}: {len(values)} remaining lives for {engines} test engines")
    return np.array(values, dtype=np.int64)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise EngineDataError(f"{path}: not a text file") from None
    except OSError as e:
        raise EngineDataError(f"cannot read {path}: {e.strerror or e}") from None
