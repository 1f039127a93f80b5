"""The device and gateway pages of the dashboard: server-rendered HTML with SVG charts
(cloud.charts). Zooming and panning are plain links carrying the time range
(`?from_ms=&to_ms=`), so every page works with scripts off."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

from cloud import aggregate_pages, charts
from cloud.aggregate_store import AggregateRow, RawKept
from cloud.render import (
    Viewer,
    device_href,
    drift_cell,
    format_age,
    format_time,
    format_value,
    gateway_href,
    layout,
    link,
    online_cell,
    table,
)
from cloud.services import consent as consent_service
from cloud.services import drift as drift_service
from cloud.services import gaps as gap_service
from cloud.services import series
from cloud.services.drift import Drift
from cloud.services.gateways import GatewayStatus
from cloud.store import BatchRow, ConfigRow, DeviceRow, HeartbeatRow, Store
from protocol import metrics as units
from protocol.bounds import MAX_TIME_MS

PRESETS = (("1 h", 3_600_000), ("24 h", 86_400_000), ("7 d", 7 * 86_400_000),
           ("30 d", 30 * 86_400_000))
MIN_ZOOM_MS = 60_000  # zooming in stops at one minute


def range_href(device_id: str, from_ms: int, to_ms: int) -> str:
    """The device page over [from_ms, to_ms), clamped to what a Window accepts."""
    width = max(MIN_ZOOM_MS, min(series.MAX_RANGE_MS, to_ms - from_ms))
    to_ms = max(width, min(MAX_TIME_MS, to_ms))
    from_ms = max(0, to_ms - width)
    return f"{device_href(device_id)}?from_ms={from_ms}&to_ms={to_ms}"


@dataclass(frozen=True)
class RangeLink:
    label: str
    href: str
    rel: str  # a name the links are found by: "1 h", "zoom-in", "earlier", ...
    current: bool = False


def range_links(device_id: str, window: series.Window) -> list[RangeLink]:
    """Presets ending where the window ends, zoom in/out around its centre, pan by a width."""
    start, end = window.from_ms, window.to_ms
    width = end - start
    centre = start + width // 2
    out = [RangeLink(label, range_href(device_id, end - ms, end), label, ms == width)
           for label, ms in PRESETS]
    out += [
        RangeLink("« earlier", range_href(device_id, start - width, start), "earlier"),
        RangeLink("zoom in", range_href(device_id, centre - width // 4, centre + width // 4),
                  "zoom-in"),
        RangeLink("zoom out", range_href(device_id, centre - width, centre + width), "zoom-out"),
        RangeLink("later »", range_href(device_id, end, end + width), "later"),
        RangeLink("latest", device_href(device_id), "latest"),
    ]
    return out


def _range_bar(device_id: str, window: series.Window) -> str:
    links = []
    for r in range_links(device_id, window):
        cls = ' class="current"' if r.current else ""
        links.append(f'<a href="{escape(r.href)}" data-range="{escape(r.rel)}"{cls}>'
                     f"{escape(r.label)}</a>")
    return (
        f'<p class="meta" id="range" data-from-ms="{window.from_ms}" data-to-ms="{window.to_ms}">'
        f"{escape(format_time(window.from_ms))} &ndash; {escape(format_time(window.to_ms))} UTC"
        f" (device clock) &middot; {escape(_duration(window.to_ms - window.from_ms))}"
        f" in buckets of {escape(_duration(window.bucket_ms))}</p>"
        f'<p class="ranges">{" ".join(links)}</p>'
    )


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0 or ms >= 10 * size:
            return f"{ms / size:g} {unit}" if ms % size == 0 else f"{ms / size:.1f} {unit}"
    return f"{ms} ms"


def _figure(s: series.Series, kind: str) -> str:
    w = s.window
    svg = charts.chart(s.buckets, w.from_ms, w.to_ms, w.bucket_ms, title=s.name, unit=s.unit,
                       name=s.name)
    return f'<figure class="{kind}" data-name="{escape(s.name)}">{svg}</figure>'




def _last_values(device: DeviceRow, now_ms: int) -> str:
    rows = [
        [f"<code>{escape(name)}</code>", escape(format_value(value)),
         escape(units.unit(device.product, name))]
        for name, value in sorted(device.last_metrics.items())
    ]
    when = (f"<p class=\"meta\">at {escape(format_time(device.last_seen_ms))} UTC"
            f" ({escape(format_age(device.last_seen_ms, now_ms))})</p>"
            if device.last_seen_ms is not None else "")
    return ("<div><h2>Last values</h2>" + when
            + table("last-values", ("Metric", "Value", "Unit"), rows, "none yet") + "</div>")


def _consent(device: DeviceRow) -> str:
    rows = [
        ["in effect", escape(consent_service.effective(device) or "not reported")],
        ["reported by the device", escape(device.consent_tier or "none")],
    ]
    if device.consent_cap is not None:
        rows.append(["capped in the cloud",
                     escape(f"{device.consent_cap} (config v{device.consent_cap_version})")])
    return "<div><h2>Consent</h2>" + table("consent", ("", "Tier"), rows, "") + "</div>"


def _config(device: DeviceRow, desired: ConfigRow | None, drift: Drift) -> str:
    state = device.reported or {}
    rows = [
        ["desired", escape(f"v{desired.version}") + "<br><code>"
         + escape(json.dumps(desired.settings, sort_keys=True)) + "</code>"
         if desired else '<span class="empty">none</span>'],
        ["reported", escape(f"v{state['config_version']} {state.get('config_status', '')}"
                            if "config_version" in state else "none")],
        ["drift", drift_cell(drift) + ("" if drift.drifting
                                       else f"<br><small>{escape(drift.reason)}</small>")],
        ["firmware", escape(" ".join(str(state[k]) for k in ("fw", "impl") if k in state))],
    ]
    return "<div><h2>Config</h2>" + table("config", ("", ""), rows, "") + "</div>"


@dataclass(frozen=True)
class DevicePage:
    device: DeviceRow
    window: series.Window
    metrics: list[series.Series]
    vitals: list[series.Series]
    desired: ConfigRow | None
    drift: Drift
    aggregates: list[AggregateRow] | None = None  # the gateways' windows in the range
    raw_kept: RawKept | None = None


def device_page_data(store: Store, device: DeviceRow, window: series.Window, now_ms: int
                     ) -> DevicePage:
    metric_series = [series.metric_series(store, device, name, window)
                     for name in series.plotted_metrics(device)]
    rows: list[HeartbeatRow] = store.heartbeats_between(
        device.id, window.from_ms, window.to_ms, series.MAX_VITALS)
    vitals = [series.vitals_from_rows(rows, name, window) for name in units.PLOTTED_VITALS]
    return DevicePage(device, window, metric_series, vitals, store.latest_config(device.id),
                      drift_service.device_state(store, device, now_ms),
                      store.aggregates(device.id, window.from_ms, window.to_ms, 1000),
                      store.raw_kept(device.id))


def device_page(page: DevicePage, now_ms: int, viewer: Viewer | None = None) -> str:
    d = page.device
    sub = [escape(d.product or "unknown product")]
    if d.gateway:
        sub.append("via " + link(gateway_href(d.gateway), d.gateway))
    sub.append(online_cell(page.drift))
    metric_figs = "".join(_figure(s, "metric") for s in page.metrics) or (
        '<p class="empty">No metrics known for this product.</p>')
    body = (
        f'<h1 id="device" data-device="{escape(d.id)}">{escape(d.id)}'
        f' <small>{" &middot; ".join(sub)}</small></h1>'
        + _range_bar(d.id, page.window)
        + f'<h2>Metrics</h2><div class="charts" id="metrics">{metric_figs}</div>'
        + '<h2>Vitals</h2><div class="charts" id="vitals">'
        + "".join(_figure(s, "vital") for s in page.vitals) + "</div>"
        + '<div class="facts">' + _last_values(d, now_ms) + _consent(d)
        + _config(d, page.desired, page.drift) + "</div>"
        + (aggregate_pages.section(page.aggregates or [], page.raw_kept)
           if page.raw_kept is not None else "")
    )
    return layout(f"fleetloop: {d.id}", body, [link(device_href(d.id), d.id)], viewer=viewer)


def _gap_row(g: BatchRow) -> list[str]:
    return [str(g.seq), escape(format_time(g.received_ms)), str(g.records),
            escape(gap_service.describe(g))]


def gateway_page(status: GatewayStatus, gaps: list[BatchRow], devices: list[DeviceRow],
                 states: dict[str, Drift], viewer: Viewer | None = None) -> str:
    g = status.gateway
    head = table("chain", ("", ""), [
        ["chain head (batches and gaps)", str(g.last_seq)],
        ["head digest", f"<code>{escape(g.last_digest)}</code>"],
        ["last batch received (UTC)", escape(format_time(g.last_batch_ms))],
        ["registered (UTC)", escape(format_time(g.created_ms))],
        ["gaps", str(status.gaps)],
    ], "")
    gap_rows = [_gap_row(b) for b in gaps]
    device_rows = []
    for d in devices:
        device_rows.append([
            link(device_href(d.id), d.id), escape(d.product or ""), online_cell(states[d.id]),
            escape(format_time(d.last_seen_ms)), f'<span class="num">{d.records}</span>',
        ])
    body = (
        f'<h1 id="gateway" data-gateway="{escape(g.id)}">{escape(g.id)}</h1>'
        + "<h2>Chain</h2>" + head
        + "<h2>Gaps</h2>"
        + table("gaps", ("Batch", "Received (UTC)", "Records", "Status and reason"), gap_rows,
                 "No gaps: every batch of this gateway was stored.")
        + "<h2>Devices</h2>"
        + table("gateway-devices", ("Device", "Product", "Status", "Last seen (UTC)", "Records"),
                 device_rows, "No devices assigned.")
    )
    return layout(f"fleetloop: gateway {g.id}", body, [link(gateway_href(g.id), g.id)],
                  viewer=viewer)

