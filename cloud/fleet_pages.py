"""The registry's pages of the dashboard: customers, cohorts and the audit log.
Server-rendered HTML like cloud.pages: every value escaped, plots as SVG (cloud.charts),
filters, metric choice, time ranges and paging as plain query links (scripts off)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote, urlencode

from cloud import charts
from cloud.render import (
    Viewer,
    device_href,
    drift_cell,
    format_time,
    layout,
    link,
    online_cell,
    table,
)
from cloud.services import consent as consent_service
from cloud.services import fleet, registry, series
from cloud.services.drift import Drift
from cloud.store import AuditRow, CohortRow, CustomerRow, DeviceRow, RegistryRow, Store
from protocol.bounds import MAX_TIME_MS

MAX_PLOTTED_DEVICES = 200  # a group plot merges at most this many devices' series
AUDIT_PAGE = 50


def customer_href(customer_id: str) -> str:
    return "/customers/" + quote(customer_id, safe="")


def cohort_href(name: str) -> str:
    return "/cohorts/" + quote(name, safe="")




# -- a group's plot: one metric over several devices -----------------------------------------


@dataclass(frozen=True)
class GroupPlot:
    """A metric of a group of devices over a window, and the metrics one can switch to."""

    series: series.Series | None  # None: the group has no devices or no known metric
    metrics: list[str]
    devices: int  # devices merged into the plot
    left_out: int  # devices beyond MAX_PLOTTED_DEVICES


def group_window(devices: Sequence[DeviceRow], now_ms: int, from_ms: int | None,
                 to_ms: int | None) -> series.Window:
    """The range asked for, else the last day of the group's data (ending just after the
    newest timestamp of any of its devices)."""
    newest = max((d.last_seen_ms for d in devices if d.last_seen_ms is not None), default=now_ms)
    end = max(series.DEFAULT_RANGE_MS, min(MAX_TIME_MS, newest + 1))
    width = series.DEFAULT_RANGE_MS
    if from_ms is None and to_ms is None:
        return series.Window(end - width, end, series.DEFAULT_POINTS)
    stop = to_ms if to_ms is not None else (from_ms or 0) + width
    start = from_ms if from_ms is not None else max(0, stop - width)
    return series.Window(start, stop, series.DEFAULT_POINTS)


def group_metrics(devices: Sequence[DeviceRow]) -> list[str]:
    """The metrics of the group's products, in the units table's order, first seen first."""
    out: list[str] = []
    for d in devices:
        for name in series.plotted_metrics(d):
            if name not in out:
                out.append(name)
    return out


def group_plot(store: Store, devices: Sequence[DeviceRow], metric: str | None,
               window: series.Window) -> GroupPlot:
    names = group_metrics(devices)
    sent = [n for n in names if any(n in d.last_metrics for d in devices)]
    chosen = metric if metric is not None else next(iter(sent or names), None)
    if chosen is None:
        return GroupPlot(None, names, 0, 0)
    series.check_metric(chosen)
    plotted = [d.id for d in devices][:MAX_PLOTTED_DEVICES]
    merged = series.cohort_series(store, plotted, chosen, window)
    return GroupPlot(merged, names, len(plotted), max(0, len(devices) - len(plotted)))


def _plot_html(base: str, plot: GroupPlot) -> str:
    if plot.series is None:
        return '<p class="empty" id="group-plot">Nothing to plot: no products with metrics.</p>'
    s = plot.series
    w = s.window
    picks = []
    for name in plot.metrics:
        cls = ' class="current"' if name == s.name else ""
        href = f"{base}?{urlencode({'metric': name, 'from_ms': w.from_ms, 'to_ms': w.to_ms})}"
        picks.append(f'<a href="{escape(href)}" data-metric="{escape(name)}"{cls}>'
                     f"{escape(name)}</a>")
    ranges = []
    width = w.to_ms - w.from_ms
    for label, start, stop in (("« earlier", w.from_ms - width, w.from_ms),
                               ("later »", w.to_ms, w.to_ms + width)):
        if 0 <= start and stop <= MAX_TIME_MS:
            href = f"{base}?{urlencode({'metric': s.name, 'from_ms': start, 'to_ms': stop})}"
            ranges.append(link(href, label))
    ranges.append(link(f"{base}?{urlencode({'metric': s.name})}", "latest"))
    svg = charts.chart(s.buckets, w.from_ms, w.to_ms, w.bucket_ms, title=s.name, unit=s.unit,
                       name=s.name)
    note = (f" ({plot.left_out} more devices not plotted)" if plot.left_out else "")
    return (
        f'<p class="meta" id="range" data-from-ms="{w.from_ms}" data-to-ms="{w.to_ms}">'
        f"{escape(format_time(w.from_ms))} &ndash; {escape(format_time(w.to_ms))} UTC"
        f" (device clock) &middot; min, max and mean over {plot.devices}"
        f" device{'' if plot.devices == 1 else 's'}{escape(note)}"
        "</p>"
        f'<p class="ranges" id="metric-links">{" ".join(picks)}</p>'
        f'<p class="ranges">{" ".join(ranges)}</p>'
        f'<div class="charts"><figure class="group" data-name="{escape(s.name)}">{svg}'
        "</figure></div>"
    )


# -- device tables ---------------------------------------------------------------------------


def _status(reg: RegistryRow | None) -> str:
    status = registry.ACTIVE if reg is None else reg.status
    return f'<span class="{escape(status)}">{escape(status)}</span>'


def product_rows(devices: Sequence[DeviceRow], states: Mapping[str, Drift],
                 regs: Mapping[str, RegistryRow]) -> list[list[str]]:
    rows = []
    for d in devices:
        state = states[d.id]
        rows.append([
            link(device_href(d.id), d.id), escape(d.product or ""), online_cell(state),
            escape(consent_service.effective(d) or "not reported"),
            escape(format_time(d.last_seen_ms)), escape(fleet.firmware(d)), drift_cell(state),
            _status(regs.get(d.id)),
        ])
    return rows


PRODUCT_HEADS = ("Device", "Product", "Status", "Consent", "Last seen (UTC, device clock)",
                 "Firmware", "Config drift", "Registry")


# -- customers -------------------------------------------------------------------------------


def customers_page(customers: Sequence[CustomerRow], products: Mapping[str, int],
                   viewer: Viewer | None = None) -> str:
    rows = [[link(customer_href(c.id), c.id), escape(c.name), f'<span class="num">'
             f"{products.get(c.id, 0)}</span>",
             '<span class="cancelled">cancelled ' + escape(format_time(c.cancelled_ms))
             + "</span>" if c.cancelled_ms is not None else '<span class="online">active</span>']
            for c in customers]
    body = ('<h1 id="customers">Customers</h1>'
            + table("customer-list", ("Customer", "Name", "Products", "Account"), rows,
                     "No customers yet (POST /api/v1/customers)."))
    return layout("fleetloop: customers", body, [link("/customers", "Customers")], viewer=viewer)


def customer_page(customer: CustomerRow, devices: Sequence[DeviceRow],
                  states: Mapping[str, Drift], regs: Mapping[str, RegistryRow],
                  plot: GroupPlot, viewer: Viewer | None = None) -> str:
    href = customer_href(customer.id)
    account = (f'<span class="cancelled" id="account" data-cancelled="true">cancelled '
               f"{escape(format_time(customer.cancelled_ms))} UTC: its products share only "
               "essential data and get no proposals</span>"
               if customer.cancelled_ms is not None
               else '<span class="online" id="account" data-cancelled="false">active</span>')
    up = sum(1 for d in devices if states[d.id].online)
    heading = (f'<h1 id="customer" data-customer="{escape(customer.id)}">{escape(customer.name)}'
               f" <small>{escape(customer.id)} &middot; {account}</small></h1>"
               f'<p class="meta">{len(devices)} products ({up} online) &middot; customer since '
               f"{escape(format_time(customer.created_ms))} UTC</p>")
    return layout(f"fleetloop: {customer.name}",
                  _group_body(heading, ("Products", "products", "No products."),
                              devices, states, regs, ("Usage", href, plot)),
                  [link("/customers", "Customers"), link(href, customer.id)], viewer=viewer)


def _group_body(heading: str, listing: tuple[str, str, str], devices: Sequence[DeviceRow],
                states: Mapping[str, Drift], regs: Mapping[str, RegistryRow],
                plotted: tuple[str, str, GroupPlot]) -> str:
    """A group's page (a customer's products, a cohort's members): its heading, the table of
    its products, their plot. listing is (title, table id, text when empty), plotted (title,
    the page's href, the plot)."""
    title, table_id, empty = listing
    plot_title, href, plot = plotted
    return (heading + f"<h2>{title}</h2>"
            + table(table_id, PRODUCT_HEADS, product_rows(devices, states, regs), empty)
            + f"<h2>{plot_title}</h2>" + _plot_html(href, plot))


# -- cohorts ---------------------------------------------------------------------------------


def _definition(row: CohortRow) -> str:
    if row.kind == "list":
        ids = row.spec.get("devices", [])
        return "list of " + ", ".join(link(device_href(d), d) for d in ids[:20]) + (
            f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    return "rule <code>" + escape(json.dumps(row.spec, sort_keys=True)) + "</code>"


def cohorts_page(cohorts: Sequence[CohortRow], sizes: Mapping[str, int],
                 viewer: Viewer | None = None) -> str:
    rows = [[link(cohort_href(c.name), c.name), _definition(c), str(c.priority),
             f'<span class="num">{sizes.get(c.name, 0)}</span>',
             escape(format_time(c.updated_ms))] for c in cohorts]
    body = ('<h1 id="cohorts">Cohorts</h1>'
            + table("cohort-list", ("Cohort", "Members by", "Priority", "Members",
                                     "Updated (UTC)"), rows,
                     "No cohorts yet (PUT /api/v1/cohorts/{name})."))
    return layout("fleetloop: cohorts", body, [link("/cohorts", "Cohorts")], viewer=viewer)


def cohort_page(cohort: CohortRow, devices: Sequence[DeviceRow], states: Mapping[str, Drift],
                regs: Mapping[str, RegistryRow], plot: GroupPlot,
                viewer: Viewer | None = None) -> str:
    href = cohort_href(cohort.name)
    heading = (f'<h1 id="cohort" data-cohort="{escape(cohort.name)}">{escape(cohort.name)}'
               f" <small>priority {cohort.priority}</small></h1>"
               f'<p class="meta" id="definition">{_definition(cohort)} &middot; {len(devices)}'
               f" active members &middot; updated {escape(format_time(cohort.updated_ms))} UTC</p>")
    return layout(f"fleetloop: cohort {cohort.name}",
                  _group_body(heading, ("Members", "members", "No active members."),
                              devices, states, regs, ("Telemetry", href, plot)),
                  [link("/cohorts", "Cohorts"), link(href, cohort.name)], viewer=viewer)


# -- the audit log ---------------------------------------------------------------------------

AUDIT_FILTERS = ("actor", "action", "target", "outcome")


def audit_href(filters: Mapping[str, str | None], before: int | None = None) -> str:
    params = {k: v for k, v in filters.items() if v is not None}
    if before is not None:
        params["before"] = str(before)
    return "/audit" + ("?" + urlencode(params) if params else "")


def _value(text: str | None) -> str:
    return "" if text is None else f"<code>{escape(text)}</code>"


def audit_page(rows: Sequence[AuditRow], filters: Mapping[str, str | None], page_size: int,
               viewer: Viewer | None = None) -> str:
    def pick(key: str, value: str) -> str:
        href = audit_href({**filters, key: value})
        return (f'<a href="{escape(href)}" data-filter="{escape(key)}">{escape(value)}</a>')

    out = []
    for r in rows:
        cls = "refused" if r.outcome == "refused" else "ok"
        out.append([
            f'<span class="num">{r.id}</span>', escape(format_time(r.at_ms)),
            pick("actor", r.actor) + f" <small>({escape(r.role)})</small>",
            pick("action", r.action), pick("target", r.target),
            f'<span class="{cls}">{pick("outcome", r.outcome)}</span>'
            + (f"<br><small>{escape(r.reason)}</small>" if r.reason else ""),
            _value(r.before), _value(r.after),
        ])
    active = [f"{escape(k)} = <strong>{escape(v)}</strong> "
              f"({link(audit_href({**filters, k: None}), 'clear')})"
              for k, v in filters.items() if v is not None]
    shown = ("Filtered: " + "; ".join(active) + f" &middot; {link('/audit', 'all entries')}"
             if active else "All entries, newest first; click an actor, action, target or"
             " outcome to filter by it.")
    older = ""
    if len(rows) == page_size and rows:
        older = (f'<p><a id="older" href="{escape(audit_href(filters, rows[-1].id))}">'
                 "older entries &raquo;</a></p>")
    body = (
        '<h1 id="audit">Audit log</h1>'
        f'<p class="meta" id="filters">{shown}</p>'
        + table("audit-log", ("#", "When (UTC)", "Who", "Action", "Target", "Outcome",
                               "Before", "After"), out, "No entries.")
        + older
    )
    return layout("fleetloop: audit log", body, [link("/audit", "Audit")], viewer=viewer)
