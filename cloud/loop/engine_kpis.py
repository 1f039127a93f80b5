"""Engine KPIs from the stored flight records (one record per flight: engine_unit, cycle and
the 14 FD001 sensors), as of at_ms:

- **EGT margin**: how far the exhaust gas temperature sits below the level engines reach at
  failure. The sensor is `t50`, the total temperature at the low-pressure-turbine outlet: the
  station an engine's EGT probes measure (downstream of the turbines), and of FD001's
  temperatures the one that rises most, relative to its noise, as the compressor wears
  (healthy engines read about 1402.6 degR over their first 10 cycles, failing ones about
  1427.4 degR over their last 10: the mean over the 100 FD001 training engines). No redline
  ships with C-MAPSS, so the margin is to that failure level: EGT_LIMIT - the 10-flight mean.
- **Efficiency trends**: slopes per 100 cycles over the current run of `phi` (fuel flow over
  HPC static pressure: it falls as the HPC loses efficiency) and `t30` (HPC outlet
  temperature: it rises).
- **Vibration**: not measured. C-MAPSS has no vibration channel and the engine profile sends
  none; the KPI says so rather than invent one.
- **Predicted remaining cycles**: the shipped model (cloud.loop.artefact) on the features of
  the current run (records since the last overhaul: the cycle counter starting again, or
  another unit), with the maintenance alert at its threshold.

Reads are bounded: the newest MAX_RECORDS flight records before at_ms (a C-MAPSS life is at
most 362 cycles), found by seq within the device's current incarnation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cloud.loop import kpis as k
from cloud.loop.activity import WEEK_MS, Activity, weekly_counts
from cloud.loop.artefact import Artefact, load
from cloud.loop.data import SENSORS, EngineTable
from cloud.loop.features import features
from cloud.store import DeviceRow, Store, TelemetryRow
from protocol import consent as tiers

MAX_RECORDS = 400
EGT_SENSOR = "t50"
EGT_LIMIT = 1427.4  # degR: FD001 engines' mean t50 over their last 10 cycles (see above)
EGT_HEALTHY = 1402.6  # ... and over their first 10
EGT_WINDOW = 10  # flights averaged: one flight's reading is noisy (sd about 9 degR)
TREND_PER = 100  # trends are per 100 cycles
FIELDS = ("engine_unit", "cycle", *SENSORS)


@dataclass(frozen=True)
class EngineKpis:
    kpis: list[k.Kpi]
    weekly: list[int]
    history: k.History
    rul: float | None


@lru_cache(maxsize=1)
def model() -> Artefact:
    """The shipped model, read once per process (its file never changes under a process)."""
    return load()


def flights(store: Store, device: DeviceRow, at_ms: int) -> list[TelemetryRow]:
    """The newest MAX_RECORDS complete flight records with t < at_ms, oldest first."""
    high = device.last_seq
    if device.last_seen_ms is not None and device.last_seen_ms >= at_ms:
        high = _last_seq_before(store, device, at_ms)
    rows = store.telemetry(device.id, device.incarnation, max(0, high - MAX_RECORDS),
                           MAX_RECORDS + 1)
    return [r for r in rows if r.seq <= high and r.t < at_ms and all(f in r.m for f in FIELDS)]


def _last_seq_before(store: Store, device: DeviceRow, at_ms: int) -> int:
    """The highest s such that the first record from seq s on is older than at_ms (records'
    times rise with seq): about log2(last_seq) one-row reads."""
    low, high = 0, device.last_seq
    while low < high:
        mid = (low + high + 1) // 2
        row = store.telemetry(device.id, device.incarnation, mid - 1, 1)
        if row and row[0].t < at_ms:
            low = mid
        else:
            high = mid - 1
    return low


def current_run(rows: list[TelemetryRow]) -> list[TelemetryRow]:
    """The records since the last overhaul: where the unit changed or the cycle went down."""
    start = 0
    for i in range(1, len(rows)):
        a, b = rows[i - 1].m, rows[i].m
        if b["engine_unit"] != a["engine_unit"] or b["cycle"] <= a["cycle"]:
            start = i
    return rows[start:]


def table(run: list[TelemetryRow]) -> EngineTable:
    return EngineTable(units=np.ones(len(run), dtype=np.int64),
                       cycles=np.array([int(r.m["cycle"]) for r in run], dtype=np.int64),
                       sensors=np.array([[float(r.m[s]) for s in SENSORS] for r in run],
                                        dtype=np.float64))


def _slope(run: list[TelemetryRow], sensor: str) -> float | None:
    value = k.slope_per_week([(int(r.m["cycle"]) * WEEK_MS, float(r.m[sensor])) for r in run])
    return None if value is None else round(value * TREND_PER, 3)


def compute(store: Store, device: DeviceRow, at_ms: int, consent: str | None) -> EngineKpis:
    usage = tiers.USAGE
    rows = flights(store, device, at_ms) if k.permits(consent, usage) else []
    run = current_run(rows)
    acts = [Activity(r.t, r.t, 0, 0.0, 0.0, 1) for r in rows]
    history = k.History(max(0, at_ms - k.HISTORY_WEEKS * WEEK_MS), at_ms,
                        [a for a in acts if a.start_ms >= at_ms - k.HISTORY_WEEKS * WEEK_MS],
                        acts[0].start_ms if acts else None)
    no_data = "no flight records"
    rul: float | None = None
    if run:
        rul = float(model().forest.predict(features(table(run)))[-1])
    alert_at = model().params.alert_rul

    def egt() -> tuple[float | None, str]:
        if not run:
            return None, no_data
        mean = float(np.mean([float(r.m[EGT_SENSOR]) for r in run[-EGT_WINDOW:]]))
        return round(EGT_LIMIT - mean, 1), ""

    def trend(sensor: str) -> tuple[float | None, str]:
        value = _slope(run, sensor) if run else None
        return value, "" if value is not None else f"fewer than {k.MIN_TREND_ACTIVITIES} flights"

    def remaining() -> tuple[float | None, str]:
        return (None, no_data) if rul is None else (round(rul, 1), "")

    def alert() -> tuple[str | None, str]:
        if rul is None:
            return None, no_data
        return ("maintenance due" if rul <= alert_at else "none"), ""

    recent = history.recent()
    kpi_list = [
        k.guarded("flights_per_week", "/week", usage, consent,
                  lambda: (k.per_week(history, len(recent)), "") if acts else (None, no_data)),
        k.guarded("egt_margin_degr", "°R", usage, consent, egt),
        k.guarded("efficiency_phi_trend_per_100_cycles", "per 100 cycles", usage, consent,
                  lambda: trend("phi")),
        k.guarded("hpc_outlet_t30_trend_per_100_cycles", "°R per 100 cycles", usage, consent,
                  lambda: trend("t30")),
        k.Kpi("vibration_trend", None, "", usage, k.NO_DATA,
              "not measured: the engine profile (C-MAPSS FD001) has no vibration sensor"),
        k.guarded("predicted_remaining_cycles", "cycles", usage, consent, remaining),
        k.guarded("maintenance_alert", "", usage, consent, alert),
    ]
    return EngineKpis(kpi_list, weekly_counts(history.acts, at_ms, k.HISTORY_WEEKS), history, rul)
