"""The dashboard's health page: the churn-risk list with its reasons, customers and devices
by health score with the components, and a plot of the fleet's rides, sessions and flights
per week (cloud.charts: SVG on the server, no script). Every value escaped."""

from __future__ import annotations

from html import escape

from cloud import charts
from cloud.loop.activity import WEEK_MS
from cloud.loop.health import Component, FleetReport
from cloud.loop.kpis import HISTORY_WEEKS
from cloud.render import Viewer, device_href, format_time, layout, link, table
from cloud.store import Bucket

WORDS = {"bike": "rides", "mirror": "sessions", "engine": "flights"}


def weekly_buckets(rep: FleetReport, product: str) -> list[Bucket]:
    """The product's activities per week over the report's history, summed over devices (min
    and max: the busiest and quietest device that week)."""
    rows = [d.kpis.weekly for d in rep.devices if d.product == product and d.kpis.weekly]
    out = []
    for i in range(HISTORY_WEEKS):
        values = [w[i] for w in rows if i < len(w)]
        if values:
            total = float(sum(values))
            out.append(Bucket(start_ms=rep.at_ms - (HISTORY_WEEKS - i) * WEEK_MS,
                              count=len(values), min=total, max=total, mean=total))
    return out


def _score(score: int | None) -> str:
    if score is None:
        return '<span class="empty">-</span>'
    cls = "offline" if score < 40 else "drift" if score < 70 else "online"
    return f'<span class="num {cls}" data-score="{score}">{score}</span>'


def _components(cs: list[Component]) -> str:
    return "<br>".join(f"{escape(c.name)} {_score(c.score)} <small>{escape(c.why)}</small>"
                       for c in cs)


def _plot(rep: FleetReport, product: str, word: str) -> str:
    """'' for a product the fleet does not have."""
    buckets = weekly_buckets(rep, product)
    if not buckets:
        return ""
    svg = charts.chart(buckets, rep.at_ms - HISTORY_WEEKS * WEEK_MS, rep.at_ms, WEEK_MS,
                       title=f"{word} per week, all {product}s", unit="/week",
                       name=f"{product}-weekly")
    return f'<figure class="metric" data-name="{escape(product)}-weekly">{svg}</figure>'


def health_page(rep: FleetReport, viewer: Viewer | None = None) -> str:
    plots = "".join(_plot(rep, product, word) for product, word in WORDS.items())
    risks = [[link(device_href(r.device), r.device), escape(r.customer or ""),
              escape(r.product or ""), f'<span class="risk-kind">{escape(r.kind)}</span>',
              _score(r.score), escape(r.reason)] for r in rep.risks()]
    customers = [[escape(c.customer), _score(c.score), _components(c.components),
                  link(device_href(c.weakest), c.weakest) if c.weakest else ""]
                 for c in sorted(rep.customers(), key=lambda c: (c.score is None, c.score or 0))]
    devices = [[link(device_href(d.device), d.device), escape(d.product or ""),
                _score(d.score), _components(d.components)]
               for d in sorted(rep.devices, key=lambda d: (d.score is None, d.score or 0))]
    body = (
        '<h1 id="health">Customer health</h1>'
        f'<p class="meta" id="as-of" data-at-ms="{rep.at_ms}">as of '
        f"{escape(format_time(rep.at_ms))} UTC (record time) &middot; {len(rep.devices)} devices"
        " &middot; <a href=\"/api/v1/health/churn?format=csv\">churn-risk list as CSV</a></p>"
        f'<div class="charts" id="weekly">{plots}</div>'
        "<h2>Churn risk</h2>"
        + table("churn", ("Device", "Customer", "Product", "Kind", "Health", "Reason"), risks,
                "Nobody is drifting away.")
        + "<h2>Customers</h2>"
        + table("customer-health", ("Customer", "Health", "Components", "Weakest device"),
                customers, "No customers yet.")
        + "<h2>Devices</h2>"
        + table("device-health", ("Device", "Product", "Health", "Components"), devices,
                "No devices yet.")
    )
    return layout("fleetloop: customer health", body, [link("/health", "Health")],
                  viewer=viewer)
