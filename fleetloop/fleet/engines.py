"""Engines: simulated turbofans that replay NASA's real C-MAPSS FD001 run-to-failure
trajectories, one cycle per flight, with failures at known data times.

An engine flies `flights_per_day` flights a day at fixed times (UTC) and reports each flight's
cycle when it lands. It enters the span part-way through a unit's trajectory, chosen so that the
unit's last cycle (its failure) falls on a known flight: for about half the engines inside the
span, for the rest after it. At failure the engine is overhauled and replays a different unit
from cycle 1. Samples carry engine_unit, cycle and the 14 sensors with the names and values
device/profiles/engine.py produces from the same file.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .draws import DAY_MS, MINUTE_MS, draws
from .habit import Metrics
from .truth import Truth

DATA = "cmapss_fd001.bin"
MAGIC = b"CMT1"
UNITS = 100
# As in device/profiles/engine.py (tests pin them equal; this module does not import the
# device profile, which opens the file the device's way).
SENSORS = ("t24", "t30", "t50", "p30", "nf", "nc", "ps30", "phi", "nrf", "nrc", "bpr", "htbleed",
           "w31", "w32")
NAMES = ("engine_unit", "cycle", *SENSORS)
IN_SPAN_SHARE = 0.5
FLIGHTS_PER_DAY = (2, 6)
AFTER_SPAN_MAX_FLIGHTS = 60  # an engine that fails after the span fails within this many flights
_HEAD = struct.Struct("<4sHHI")

Row = tuple[float, ...]  # engine_unit, cycle, the 14 sensors, in NAMES order


class EngineDataError(ValueError):
    """The trajectory file is missing or not what the engine profile reads."""


def default_data_path() -> Path:
    return Path(str(resources.files("device.profiles").joinpath(DATA)))


@lru_cache(maxsize=4)
def load_trajectories(path: Path | None = None) -> dict[int, tuple[Row, ...]]:
    """unit -> its rows, cycle 1 to failure. Read once per process: every engine shares them."""
    path = path or default_data_path()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise EngineDataError(f"cannot read engine data {path}: {e}") from e
    if len(data) < _HEAD.size:
        raise EngineDataError(f"{path}: too short for engine data")
    magic, columns, size, rows = _HEAD.unpack_from(data)
    start = _HEAD.size + 8 * columns
    if magic != MAGIC or columns != len(SENSORS) or size != 4 + 2 * columns \
            or len(data) != start + rows * size:
        raise EngineDataError(f"{path}: not a packed C-MAPSS trajectory file")
    cols = struct.unpack_from("<" + "iI" * columns, data, _HEAD.size)
    bases, scales = cols[0::2], cols[1::2]
    units: dict[int, list[Row]] = {}
    for raw in struct.iter_unpack(f"<{2 + columns}H", data[start:]):
        values = tuple((b + v) / s for b, v, s in zip(bases, raw[2:], scales, strict=True))
        units.setdefault(raw[0], []).append((raw[0], raw[1], *values))
    for unit, trajectory in units.items():
        if [int(r[1]) for r in trajectory] != list(range(1, len(trajectory) + 1)):
            raise EngineDataError(f"{path}: unit {unit} does not run from cycle 1 without gaps")
    return {unit: tuple(rows_) for unit, rows_ in units.items()}


@dataclass(frozen=True)
class FlightSchedule:
    """Landings at fixed minutes of each UTC day; landing n counts from the span's first one."""

    minutes: tuple[int, ...]  # sorted minutes of the day
    first: int  # global index (day * flights per day + slot) of landing 0

    @classmethod
    def starting(cls, minutes: Sequence[int], start_ms: int) -> FlightSchedule:
        mins = tuple(sorted(minutes))
        day, into = divmod(start_ms, DAY_MS)
        return cls(mins, day * len(mins) + bisect.bisect_left(mins, -(-into // MINUTE_MS)))

    def landing(self, n: int) -> int:
        day, slot = divmod(self.first + n, len(self.minutes))
        return day * DAY_MS + self.minutes[slot] * MINUTE_MS

    def count_until(self, end_ms: int) -> int:
        """How many landings fall at or before end_ms."""
        day, into = divmod(end_ms, DAY_MS)
        last = day * len(self.minutes) + bisect.bisect_right(self.minutes, into // MINUTE_MS)
        return max(0, last - self.first)


@dataclass(frozen=True)
class EngineTraits:
    flights_per_day: int
    flight_minutes: tuple[int, ...]  # landing times, minutes after 00:00 UTC
    first_unit: int
    first_cycle: int
    failure_flight: int  # landing index of the first unit's last cycle
    failure_ms: int  # its scheduled time
    fails_in_span: bool
    units: tuple[int, ...] | None  # the units this engine may replay (None: all)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flight_minutes"] = list(self.flight_minutes)
        out["units"] = None if self.units is None else list(self.units)
        return out


def allowed_units(units: Sequence[int] | None, data: Mapping[int, Any]) -> tuple[int, ...]:
    if units is None:
        return tuple(sorted(data))
    chosen = tuple(sorted(set(units)))
    missing = [u for u in chosen if u not in data]
    if not chosen or missing:
        raise ValueError(f"engine units must be a non-empty choice of {min(data)}..{max(data)}"
                         + (f" (no unit {missing[0]})" if missing else ""))
    return chosen


def draw_traits(seed: int, device_id: str, start_ms: int, end_ms: int,
                data: Mapping[int, tuple[Row, ...]], units: Sequence[int] | None
                ) -> EngineTraits:
    rng = draws(seed, device_id, "traits")
    pool = allowed_units(units, data)
    in_span = rng.random() < IN_SPAN_SHARE
    k = rng.randint(*FLIGHTS_PER_DAY)
    minutes = tuple(sorted(rng.sample(range(5 * 60, 23 * 60, 30), k)))
    schedule = FlightSchedule.starting(minutes, start_ms)
    flights = schedule.count_until(end_ms)
    longest = max(len(data[u]) for u in pool)
    if not in_span:
        # Outlasting the span needs a unit with more cycles left than the span has flights:
        # fly fewer flights a day if that makes it possible, else fail inside after all.
        while k > FLIGHTS_PER_DAY[0] and flights >= longest:
            k -= 1
            minutes = tuple(sorted(rng.sample(minutes, k)))
            schedule = FlightSchedule.starting(minutes, start_ms)
            flights = schedule.count_until(end_ms)
        in_span = flights >= longest
    if in_span:
        unit = pool[rng.randrange(len(pool))]
        life = len(data[unit])
        high = max(0, min(flights, life) - 1)
        failure = rng.randint(min(high, (3 * min(flights, life)) // 10), high)
    else:
        candidates = [u for u in pool if len(data[u]) > flights]
        unit = candidates[rng.randrange(len(candidates))]
        life = len(data[unit])
        failure = rng.randint(flights, min(life - 1, flights + AFTER_SPAN_MAX_FLIGHTS))
    return EngineTraits(
        flights_per_day=k, flight_minutes=minutes, first_unit=unit, first_cycle=life - failure,
        failure_flight=failure, failure_ms=schedule.landing(failure),
        fails_in_span=schedule.landing(failure) <= end_ms,
        units=None if units is None else pool)


class Engine:
    product = "engine"

    def __init__(self, device_id: str, seed: int, start_ms: int, end_ms: int, truth: Truth,
                 traits: EngineTraits, data: Mapping[int, tuple[Row, ...]]) -> None:
        self.device_id = device_id
        self.seed = seed
        self.end_ms = end_ms
        self.truth = truth
        self.data = data
        self.pool = allowed_units(traits.units, data)
        self.schedule = FlightSchedule.starting(traits.flight_minutes, start_ms)
        self.flight = 0  # landings reported so far
        self.next_ms = self.schedule.landing(0)
        self.overhauls = 0
        self._fly(traits.first_unit, traits.first_cycle, start_ms)

    def _fly(self, unit: int, first_cycle: int, t_ms: int) -> None:
        """From the next landing on, replay `unit` from `first_cycle`."""
        self.rows = self.data[unit]
        self.at = first_cycle - 1
        failure_flight = self.flight + len(self.rows) - first_cycle
        self.truth.event(self.device_id, t_ms, "trajectory", unit=unit, first_cycle=first_cycle,
                         expected_failure_ms=self.schedule.landing(failure_flight),
                         expected_failure_flight=failure_flight)

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> Metrics | None:
        if self.next_ms > t_ms:
            return None
        row = self.rows[self.at]
        # one landing per call: a device that slept through several reports them in turn
        self.flight += 1
        self.next_ms = self.schedule.landing(self.flight)
        self.at += 1
        if self.at == len(self.rows):
            self._overhaul(int(row[0]), int(row[1]), t_ms)
        # engine_unit and cycle are ints in the row already (see load_trajectories)
        return dict(zip(NAMES, row, strict=True))

    def _overhaul(self, unit: int, cycle: int, t_ms: int) -> None:
        self.truth.event(self.device_id, t_ms, "failure", unit=unit, cycle=cycle,
                         flight=self.flight - 1)
        self.overhauls += 1
        others = [u for u in self.pool if u != unit] or [unit]
        rng = draws(self.seed, self.device_id, f"overhaul/{self.overhauls}")
        self._fly(others[rng.randrange(len(others))], 1, t_ms)

    def rest_ms(self, t_ms: int, settings: Mapping[str, int]) -> int:
        if self.next_ms > self.end_ms:
            return max(1, self.end_ms + 1 - t_ms)
        return max(1, self.next_ms - t_ms)
