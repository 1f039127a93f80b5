"""Time-series charts as SVG, rendered on the server: no script, no external resource, every
text escaped. A chart is a line through the bucket means with a band from each bucket's
min to its max, a value axis with its unit and a time axis in UTC. Empty buckets break the
line where the data has a gap (see _runs); a bucket alone between gaps is a dot.

Colours and strokes are SVG presentation attributes (allowed under the dashboard's
Content-Security-Policy, unlike style attributes), so a chart reads even without the CSS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from statistics import median_low

from cloud.store import Bucket


@dataclass(frozen=True)
class Frame:
    """The chart's size and its plot area's margins, in SVG user units."""

    width: int = 720
    height: int = 210
    left: int = 64
    right: int = 16
    top: int = 26
    bottom: int = 40

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


FRAME = Frame()
_SECOND, _MINUTE, _HOUR, _DAY = 1000, 60_000, 3_600_000, 86_400_000
TIME_STEPS = (
    _SECOND, 2 * _SECOND, 5 * _SECOND, 10 * _SECOND, 15 * _SECOND, 30 * _SECOND,
    _MINUTE, 2 * _MINUTE, 5 * _MINUTE, 10 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE,
    _HOUR, 2 * _HOUR, 3 * _HOUR, 6 * _HOUR, 12 * _HOUR,
    _DAY, 2 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY, 60 * _DAY, 90 * _DAY,
)
MAX_TIME_TICKS = 8


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: about `count` of them, 1/2/5 x 10^n apart."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high - low < 1e-9 * max(1.0, abs(low)):  # one value (or float noise): pad around it
        pad = abs(low) * 0.1 if abs(low) >= 1e-6 else 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    digits = max(0, 3 - math.floor(math.log10(step)))  # round away float noise, not the step
    first = math.floor(low / step) * step
    ticks = [round(first, digits)]
    while (ticks[-1] < high - step * 1e-9 or len(ticks) < 2) and len(ticks) <= 2 * count + 2:
        ticks.append(round(first + len(ticks) * step, digits))
    return ticks


def format_tick(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    text = f"{value:.{min(decimals, 6)}f}"
    return "0" if text.strip("-0.") == "" else text


def time_step(span_ms: int) -> int:
    """The smallest step in TIME_STEPS giving at most MAX_TIME_TICKS ticks over the span."""
    for step in TIME_STEPS:
        if span_ms / step <= MAX_TIME_TICKS:
            return step
    return TIME_STEPS[-1] * max(1, math.ceil(span_ms / TIME_STEPS[-1] / MAX_TIME_TICKS))


def time_ticks(from_ms: int, to_ms: int) -> tuple[int, list[int]]:
    """(step, tick times): multiples of the step (UTC-aligned) within [from_ms, to_ms]."""
    step = time_step(to_ms - from_ms)
    first = -(-from_ms // step) * step
    return step, list(range(first, to_ms + 1, step))


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def time_label(ms: int, step: int, with_date: bool) -> tuple[str, str]:
    """(first line, second line) of a time tick's label."""
    when = _utc(ms)
    if step >= _DAY:
        return when.strftime("%b %d"), when.strftime("%Y") if with_date else ""
    fmt = "%H:%M:%S" if step < _MINUTE else "%H:%M"
    return when.strftime(fmt), when.strftime("%b %d") if with_date else ""


def _runs(buckets: Sequence[Bucket], bucket_ms: int) -> list[list[Bucket]]:
    """Buckets split where the data has a gap: more than twice the usual spacing between
    non-empty buckets (and more than one bucket). Dense data breaks at two empty buckets in a
    row; sparse data (hourly heartbeats in five-minute buckets) stays one line."""
    spacings = [b.start_ms - a.start_ms for a, b in zip(buckets, buckets[1:], strict=False)]
    limit = 2 * max(bucket_ms, median_low(spacings) if spacings else bucket_ms)
    runs: list[list[Bucket]] = []
    for b in buckets:
        if runs and b.start_ms - runs[-1][-1].start_ms <= limit:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def _num(value: float) -> str:
    return f"{value:.1f}"


def chart(
    buckets: Sequence[Bucket],
    from_ms: int,
    to_ms: int,
    bucket_ms: int,
    *,
    title: str,
    unit: str = "",
    frame: Frame = FRAME,
    name: str = "",
) -> str:
    """One SVG chart of the buckets over [from_ms, to_ms)."""
    f = frame
    span = max(1, to_ms - from_ms)
    label = f"{title} ({unit})" if unit else title
    attrs = (
        f'class="chart" viewBox="0 0 {f.width} {f.height}" width="{f.width}" height="{f.height}"'
        f' role="img" data-name="{escape(name or title)}" data-from-ms="{from_ms}"'
        f' data-to-ms="{to_ms}" data-buckets="{len(buckets)}"'
        f' font-family="system-ui, sans-serif" font-size="11"'
    )
    out = [f"<svg {attrs}>", f"<title>{escape(label)}</title>"]
    out.append(
        f'<text class="chart-title" x="{f.left}" y="16" font-size="13" font-weight="600"'
        f' fill="#1d2329">{escape(label)}</text>'
    )
    out.append(
        f'<rect class="plot-area" x="{f.left}" y="{f.top}" width="{f.plot_width}"'
        f' height="{f.plot_height}" fill="#fafbfc" stroke="#c9d1d9"/>'
    )

    def x_of(t: float) -> float:
        return f.left + (t - from_ms) / span * f.plot_width

    # time axis
    step, ticks = time_ticks(from_ms, to_ms)
    last_day = None
    bottom = f.top + f.plot_height
    for i, t in enumerate(ticks):
        x = x_of(t)
        day = _utc(t).date()
        top_line, date_line = time_label(t, step, i == 0 or day != last_day)
        last_day = day
        out.append(f'<line class="grid" x1="{_num(x)}" y1="{f.top}" x2="{_num(x)}" y2="{bottom}"'
                   ' stroke="#e6eaee"/>')
        out.append(
            f'<text class="time-label" x="{_num(x)}" y="{bottom + 14}" text-anchor="middle"'
            f' fill="#5b6670">{escape(top_line)}'
            + (f'<tspan x="{_num(x)}" dy="12">{escape(date_line)}</tspan>' if date_line else "")
            + "</text>"
        )

    if not buckets:
        out.append(
            f'<text class="no-data" x="{f.left + f.plot_width / 2:.1f}"'
            f' y="{f.top + f.plot_height / 2:.1f}" text-anchor="middle" fill="#5b6670">'
            "no data in this range</text>"
        )
        out.append("</svg>")
        return "".join(out)

    # value axis
    vticks = nice_ticks(min(b.min for b in buckets), max(b.max for b in buckets))
    low, high = vticks[0], vticks[-1]
    vstep = vticks[1] - vticks[0]

    def y_of(v: float) -> float:
        return f.top + f.plot_height - (v - low) / (high - low) * f.plot_height

    for v in vticks:
        y = y_of(v)
        out.append(f'<line class="grid" x1="{f.left}" y1="{_num(y)}" x2="{f.left + f.plot_width}"'
                   f' y2="{_num(y)}" stroke="#e6eaee"/>')
        out.append(f'<text class="value-label" x="{f.left - 6}" y="{_num(y + 4)}"'
                   f' text-anchor="end" fill="#5b6670">{escape(format_tick(v, vstep))}</text>')
    if unit:
        out.append(
            f'<text class="unit-label" x="14" y="{f.top + f.plot_height / 2:.1f}"'
            f' text-anchor="middle" fill="#5b6670"'
            f' transform="rotate(-90 14 {f.top + f.plot_height / 2:.1f})">{escape(unit)}</text>'
        )

    # the data: a min-max band and a line of means per run of adjacent buckets
    for run in _runs(buckets, bucket_ms):
        xs = [x_of(min(b.start_ms + bucket_ms / 2, to_ms)) for b in run]
        if len(run) == 1:
            b = run[0]
            out.append(f'<line class="band" x1="{_num(xs[0])}" y1="{_num(y_of(b.max))}"'
                       f' x2="{_num(xs[0])}" y2="{_num(y_of(b.min))}" stroke="#9cc3e6"'
                       ' stroke-width="3"/>')
            out.append(f'<circle class="mean-dot" cx="{_num(xs[0])}" cy="{_num(y_of(b.mean))}"'
                       ' r="2.5" fill="#1f6feb"/>')
            continue
        upper = [f"{_num(x)},{_num(y_of(b.max))}" for x, b in zip(xs, run, strict=True)]
        lower = [f"{_num(x)},{_num(y_of(b.min))}" for x, b in zip(xs, run, strict=True)]
        out.append(f'<polygon class="band" points="{" ".join(upper + lower[::-1])}"'
                   ' fill="#9cc3e6" fill-opacity="0.55" stroke="none"/>')
        means = [f"{_num(x)},{_num(y_of(b.mean))}" for x, b in zip(xs, run, strict=True)]
        out.append(f'<polyline class="mean" points="{" ".join(means)}" fill="none"'
                   ' stroke="#1f6feb" stroke-width="1.5" stroke-linejoin="round"/>')
    out.append("</svg>")
    return "".join(out)
