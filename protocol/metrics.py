"""Units of the product profiles' metrics and of the vitals, declared once, as data.

The same names as protocol.consent.METRIC_TIERS (device/profiles/*.py document what each
metric is); the cloud puts these units on its plots' axes and next to last values. An empty
unit is a count, a flag (0/1) or a ratio. A metric that is not in the table is still plotted,
with no unit. CPython only: nothing on the device needs it.
"""

from __future__ import annotations

UNITS: dict[str, dict[str, str]] = {
    "bike": {"cadence": "rpm", "power": "W", "speed": "km/h", "heart_rate": "bpm"},
    "mirror": {"session_active": "", "reps": "reps", "brightness": "%", "room_temp": "°C"},
    # NASA C-MAPSS sensors: temperatures in degrees Rankine, pressures in psia, speeds in rpm
    # (nf, nrf: fan; nc, nrc: core, corrected), flows in lbm/s; phi is fuel flow over ps30.
    "engine": {"engine_unit": "", "cycle": "cycles", "t24": "°R", "t30": "°R", "t50": "°R",
               "p30": "psia", "nf": "rpm", "nc": "rpm", "ps30": "psia", "phi": "pps/psi",
               "nrf": "rpm", "nrc": "rpm", "bpr": "", "htbleed": "", "w31": "lbm/s",
               "w32": "lbm/s"},
}

# The vitals the cloud plots (protocol.state): heap low-water mark, what the buffer holds on
# flash, reconnects since the device's start, and the link's signal.
VITALS_UNITS: dict[str, str] = {
    "heap_low": "B", "heap_free": "B", "buffer_bytes": "B", "buffered": "records",
    "reconnects": "", "rssi": "dBm", "uptime_s": "s",
}
PLOTTED_VITALS = ("heap_low", "buffer_bytes", "reconnects", "rssi")


def unit(product: str | None, metric: str) -> str:
    """The metric's unit for the product; "" when none is known."""
    return UNITS.get(product or "", {}).get(metric, "")


def metrics(product: str | None) -> tuple[str, ...]:
    """The product's metric names in the table's order; () for an unknown product."""
    return tuple(UNITS.get(product or "", {}))
