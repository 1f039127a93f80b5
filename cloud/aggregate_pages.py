"""The device page's section on the gateways' windows (cloud.services.aggregates): where raw
records stayed at the gateway it says so, with how many, so a short telemetry plot is not
taken for lost data; then the latest windows in the page's range, each metric's mean and range."""

from __future__ import annotations

from html import escape

from cloud.aggregate_store import AggregateRow, RawKept
from cloud.render import format_time, format_value, gateway_href, link, table

SHOWN = 20  # newest windows listed on the page (the API pages through all of them)


def _metrics(row: AggregateRow) -> str:
    return "<br>".join(
        f"<code>{escape(name)}</code> {escape(format_value(s['mean']))}"
        f" ({escape(format_value(s['min']))}&ndash;{escape(format_value(s['max']))}, n={s['n']})"
        for name, s in sorted(row.m.items())) or '<span class="empty">none allowed</span>'


def section(rows: list[AggregateRow], kept: RawKept) -> str:
    """'' for a device no gateway summarises."""
    if not rows and not kept.windows:
        return ""
    notice = ""
    if kept.records:
        where = ", ".join(link(gateway_href(g), g) for g in kept.gateways)
        notice = (f'<p class="meta" id="raw-kept">{kept.records} raw records kept at gateway '
                  f"{where} by its product configuration: the cloud holds their "
                  f"{kept.windows} window summaries, not the records (nothing is missing).</p>")
    body = [[escape(format_time(r.start_ms)), f"{r.window_s} s", str(r.n),
             escape(f"{r.first_seq}..{r.last_seq}"), escape(r.raw), _metrics(r)]
            for r in rows[-SHOWN:]]
    return ('<div id="aggregates"><h2>Windows from the gateway</h2>' + notice
            + table("aggregates", ("Start (UTC)", "Length", "Records", "Seqs", "Raw",
                                   "Mean (min-max)"), body, "none in this range")
            + "</div>")
