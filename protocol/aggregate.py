"""Aggregate record: the gateway's own summary of one device's records over a window.

CPython only (gateway and cloud). A gateway configured to window a product folds each of the
product's metric records into the window of its device time (`window_start`) and, once the
window is closed, sends one aggregate record inside its signed batch (protocol.batch version 3,
`aggregates`):
    {"d":"bike-1","first_seq":101,"i":1234567,"last_seq":158,"m":{"cadence":{"last":84,
     "max":90,"mean":81.2,"min":70,"n":58}},"n":58,"p":"bike","raw":"sent",
     "start":1732345620000,"v":1,"window_s":60}
v          format version (1)
d, i       device id and incarnation of the records folded (a window never mixes two)
p          the device's product (the profile its state reported)
start      window start, device clock, ms: a multiple of window_s * 1000
window_s   window length in seconds, 1..86400
n          records folded (1..2**53-1)
first_seq, last_seq   lowest and highest seq folded (records of a window need not be contiguous)
raw        "sent": the device's raw records travel too, signed by the device; "local": they stay
           at the gateway (the product's config), and the cloud holds only this summary
m          per metric: n (records that carried it), min, max, mean, last.
           Booleans count as 0/1 (their mean is the share of true); `last` keeps the value
           of the last record folded (devices send in seq order).
The aggregate is signed by the gateway (the batch's signature), not by the device: the cloud
checks the device's tag on raw records only. Keys are sorted (canonical like the batch).
Identity: (d, i, start, first_seq).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from protocol import record as record_codec
from protocol.bounds import MAX_COUNTER, MAX_SEQ, MAX_TIME_MS
from protocol.topics import valid_device_id

VERSION = 1
RAW_SENT = "sent"
RAW_LOCAL = "local"
RAWS = (RAW_SENT, RAW_LOCAL)
MIN_WINDOW_S = 1
MAX_WINDOW_S = 86400
MAX_PRODUCT_CHARS = 32
FIELDS = frozenset(("v", "d", "i", "p", "start", "window_s", "n", "first_seq", "last_seq",
                    "raw", "m"))
STAT_FIELDS = frozenset(("n", "min", "max", "mean", "last"))

Number = int | float


MODE_RAW = "raw"
MAX_MODE_CHARS = 16


def parse_mode(text: object) -> tuple[int | None, bool]:
    """(window_s or None for raw, raw records stay local) of a product's mode: `raw`, `N`
    (windows of N s next to the raw records) or `N:local` (windows only); ValueError says
    what is wrong. The one syntax of the gateway's setting and of the cloud's policy."""
    if not isinstance(text, str) or len(text) > MAX_MODE_CHARS:
        raise ValueError("mode must be raw, N or N:local (N seconds)")
    if text == MODE_RAW:
        return None, False
    window, _, suffix = text.partition(":")
    if suffix not in ("", "local"):
        raise ValueError(f"mode {text!r}: the only suffix is ':local'")
    if not window.isdigit() or not window.isascii():
        raise ValueError(f"mode {text!r}: use raw, N or N:local (N seconds)")
    seconds = int(window)
    if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
        raise ValueError(f"mode {text!r}: window must be {MIN_WINDOW_S}..{MAX_WINDOW_S} s")
    return seconds, suffix == "local"


def mode_text(window_s: int | None, raw_local: bool) -> str:
    """The canonical text of a mode (parse_mode's inverse)."""
    if window_s is None:
        return MODE_RAW
    return f"{window_s}:local" if raw_local else str(window_s)


def window_start(t_ms: int, window_s: int) -> int:
    """The start (ms) of the window of length `window_s` that holds device time `t_ms`."""
    return t_ms - t_ms % (window_s * 1000)


class Stat:
    """count, min, max, mean and last of one metric's values, in the order they were folded.
    Mutable (`add` folds in place: the gateway folds thousands of records a second); `fold`
    is the pure form."""

    __slots__ = ("n", "min", "max", "mean", "last")

    def __init__(self, n: int, min: Number, max: Number, mean: float,  # noqa: A002
                 last: Number | bool) -> None:
        self.n, self.min, self.max, self.mean, self.last = n, min, max, mean, last

    @classmethod
    def first(cls, value: Number | bool) -> Stat:
        x = int(value) if type(value) is bool else value
        return cls(1, x, x, float(x), value)

    def add(self, value: Number | bool) -> None:
        x = int(value) if type(value) is bool else value
        n = self.n + 1
        # mean + (x/n - mean/n), not (sum of x)/n: no sum can overflow a float (the step is
        # at most |x - mean| / n and moves the mean toward x), and the mean stays within
        # [min, max] up to rounding.
        self.mean = self.mean + (x / n - self.mean / n)
        self.n = n
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        self.last = value

    def copy(self) -> Stat:
        return Stat(self.n, self.min, self.max, self.mean, self.last)

    def fold(self, value: Number | bool) -> Stat:
        out = self.copy()
        out.add(value)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stat) and self.to_obj() == other.to_obj()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Stat({self.to_obj()!r})"

    def to_obj(self) -> dict[str, Any]:
        mean = min(max(self.mean, float(self.min)), float(self.max))  # rounding never escapes
        return {"n": self.n, "min": self.min, "max": self.max, "mean": mean, "last": self.last}

    @classmethod
    def from_obj(cls, obj: Any) -> Stat:
        _check_stat(obj)
        return cls(obj["n"], obj["min"], obj["max"], float(obj["mean"]), obj["last"])


def add_metrics(stats: dict[str, Stat], metrics: dict[str, Any]) -> None:
    """Fold one record's metrics into `stats`, in place."""
    for name, value in metrics.items():
        old = stats.get(name)
        if old is None:
            stats[name] = Stat.first(value)
        else:
            old.add(value)


def fold_metrics(stats: dict[str, Stat], metrics: dict[str, Any]) -> dict[str, Stat]:
    """`stats` with one record's metrics folded in (new objects; `stats` is not changed)."""
    out = {name: stat.copy() for name, stat in stats.items()}
    add_metrics(out, metrics)
    return out


@dataclass(frozen=True)
class Aggregate:
    device: str
    incarnation: int
    product: str
    start_ms: int
    window_s: int
    n: int
    first_seq: int
    last_seq: int
    raw: str
    metrics: dict[str, Stat]

    def to_obj(self) -> dict[str, Any]:
        return {"v": VERSION, "d": self.device, "i": self.incarnation, "p": self.product,
                "start": self.start_ms, "window_s": self.window_s, "n": self.n,
                "first_seq": self.first_seq, "last_seq": self.last_seq, "raw": self.raw,
                "m": {name: self.metrics[name].to_obj() for name in sorted(self.metrics)}}

    @classmethod
    def from_obj(cls, obj: Any) -> Aggregate:
        """The aggregate of a checked object; ValueError says what is wrong."""
        check(obj)
        return cls(obj["d"], obj["i"], obj["p"], obj["start"], obj["window_s"], obj["n"],
                   obj["first_seq"], obj["last_seq"], obj["raw"],
                   {name: Stat.from_obj(s) for name, s in obj["m"].items()})


def _int_in(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _number(value: object) -> bool:
    if type(value) is int:
        return -MAX_COUNTER <= value <= MAX_COUNTER  # type: ignore[operator]
    return type(value) is float and math.isfinite(value)  # type: ignore[arg-type]


def _check_stat(obj: Any) -> None:
    if not isinstance(obj, dict) or set(obj) != STAT_FIELDS:
        raise ValueError("aggregate metric must have exactly n, min, max, mean, last")
    if not _int_in(obj["n"], 1, MAX_COUNTER):
        raise ValueError("aggregate metric n must be an int in 1..2**53-1")
    for name in ("min", "max", "mean"):
        if not _number(obj[name]):
            raise ValueError(f"aggregate metric {name} must be a finite number within bounds")
    if not (_number(obj["last"]) or type(obj["last"]) is bool):
        raise ValueError("aggregate metric last must be a number or a boolean")
    if obj["min"] > obj["max"]:
        raise ValueError("aggregate metric min is above its max")


def check(obj: Any) -> None:
    """ValueError unless `obj` is a valid aggregate record of this version."""
    if not isinstance(obj, dict) or set(obj) != FIELDS:
        raise ValueError("aggregate fields are wrong")
    if obj["v"] != VERSION or type(obj["v"]) is not int:
        raise ValueError("aggregate version unsupported")
    if not valid_device_id(obj["d"]):
        raise ValueError("aggregate d must be a valid device id")
    if not _int_in(obj["i"], 0, record_codec.MAX_INCARNATION):
        raise ValueError("aggregate i must be an int in 0..2**31-1")
    if not isinstance(obj["p"], str) or not 1 <= len(obj["p"]) <= MAX_PRODUCT_CHARS \
            or not record_codec.valid_metric_name(obj["p"]):
        raise ValueError("aggregate p must be a product name of 1-32 of [a-z0-9_]")
    if not _int_in(obj["window_s"], MIN_WINDOW_S, MAX_WINDOW_S):
        raise ValueError(f"aggregate window_s must be an int in {MIN_WINDOW_S}..{MAX_WINDOW_S}")
    if not _int_in(obj["start"], 0, MAX_TIME_MS) or obj["start"] % (obj["window_s"] * 1000):
        raise ValueError("aggregate start must be a time in 0..2**53-1 ms on a window boundary")
    if not _int_in(obj["n"], 1, MAX_COUNTER):
        raise ValueError("aggregate n must be an int in 1..2**53-1")
    if not _int_in(obj["first_seq"], 1, MAX_SEQ) or not _int_in(obj["last_seq"], 1, MAX_SEQ) \
            or obj["first_seq"] > obj["last_seq"]:
        raise ValueError("aggregate first_seq..last_seq must be seqs in 1..2**53-1, in order")
    if obj["raw"] not in RAWS:
        raise ValueError("aggregate raw must be 'sent' or 'local'")
    m = obj["m"]
    if not isinstance(m, dict) or len(m) > record_codec.MAX_METRICS:
        raise ValueError(f"aggregate m must be an object of at most {record_codec.MAX_METRICS}")
    for name, stat in m.items():
        if not record_codec.valid_metric_name(name):
            raise ValueError("aggregate metric names are 1-32 of [a-z0-9_]")
        _check_stat(stat)
        if stat["n"] > obj["n"]:
            raise ValueError("aggregate metric n is above the records folded")


def problem(obj: Any) -> str | None:
    """Why `obj` is no valid aggregate record, or None."""
    try:
        check(obj)
    except ValueError as exc:
        return str(exc)
    return None
