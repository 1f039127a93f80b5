"""Server-rendered dashboard HTML: no scripts, no external resources, every value escaped.

Every page is the layout (templates/layout.html: head, the stylesheet the cloud serves, a
navigation of plain links) around a body; this module renders the fleet overview and the
pieces the other pages (cloud.pages) share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from html import escape
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

from cloud.services import consent as consent_service
from cloud.services import fleet
from cloud.services.drift import Drift
from cloud.services.gateways import GatewayStatus
from cloud.services.telemetry import Overview
from cloud.store import DeviceRow, QuarantineRow

# Headers for every page: nothing may load from elsewhere, nothing may run; the only
# resource is the stylesheet the cloud serves itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STYLESHEET = "dashboard.css"

STALE_AFTER_MS = 5 * 60 * 1000


@cache
def template(name: str) -> Template:
    return Template(resources.files("cloud.templates").joinpath(name).read_text("utf-8"))


@cache
def stylesheet() -> str:
    return resources.files("cloud.templates").joinpath(STYLESHEET).read_text("utf-8")


@dataclass(frozen=True)
class Viewer:
    """Who looks at the page: shown in the navigation bar, with a sign-out form carrying the
    session's CSRF value (None: no session, e.g. a bearer caller or an open dev dashboard)."""

    name: str
    role: str
    csrf: str | None = None


NAV = (("/", "Fleet"), ("/customers", "Customers"), ("/health", "Health"), ("/cohorts", "Cohorts"),
       ("/rollouts", "Rollouts"), ("/policies", "Policies"), ("/audit", "Audit"))


def _nav(viewer: Viewer | None, crumbs: list[str]) -> str:
    links = " ".join(link(href, text) for href, text in NAV)
    trail = "".join(f" &rsaquo; {c}" for c in crumbs)
    who = ""
    if viewer is not None:
        who = (f'<span class="who" id="who" data-role="{escape(viewer.role)}">'
               f"{escape(viewer.name)} <small>({escape(viewer.role)})</small></span>")
        if viewer.csrf is not None:
            who += ('<form method="post" action="/logout" class="signout" id="signout">'
                    f'<input type="hidden" name="csrf" value="{escape(viewer.csrf)}">'
                    '<button type="submit">Sign out</button></form>')
    return (f'<nav class="top" id="nav"><span class="links">{links}</span>'
            f'<span class="trail">{trail}</span><span class="user">{who}</span></nav>')


def layout(title: str, body: str, crumbs: list[str] | None = None, refresh_s: int = 0,
           viewer: Viewer | None = None) -> str:
    """A whole page: `title` is text (escaped here), `body` and `crumbs` are HTML."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh_s)}">\n' if refresh_s else ""
    return template("layout.html").substitute(
        title=escape(title), body=body, refresh_meta=meta, nav=_nav(viewer, crumbs or []),
    )


def device_href(device_id: str) -> str:
    return "/devices/" + quote(device_id, safe="")


def gateway_href(gateway_id: str) -> str:
    return "/gateways/" + quote(gateway_id, safe="")


def link(href: str, text: str) -> str:
    """<a> with an escaped href and escaped text."""
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def table(table_id: str, heads: Sequence[str], rows: list[list[str]], empty: str) -> str:
    """A table of cells already HTML (escape what goes in them); `empty` when no rows."""
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    if rows:
        body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    else:
        body = f'<tr><td colspan="{len(heads)}" class="empty">{escape(empty)}</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def format_time(ms: int | None) -> str:
    if ms is None:
        return "never"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def format_age(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return ""
    seconds = (now_ms - ms) // 1000
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _cell(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{text}</td>"


def _metrics(metrics: dict[str, Any]) -> str:
    if not metrics:
        return '<span class="empty">none</span>'
    return "<br>".join(
        f"<code>{escape(name)}={escape(format_value(metrics[name]))}</code>"
        for name in sorted(metrics)
    )


def _config(device: DeviceRow, desired: int | None) -> str:
    parts = [escape(f"desired v{desired}" if desired is not None else "desired: none")]
    state = device.reported
    if state is not None:
        status = str(state.get("config_status", "none"))
        version = state.get("config_version")
        text = "reported " + (f"v{version} " if version is not None else "") + status
        if state.get("reason"):
            text += f": {state['reason']}"
        cls = status if status in ("applied", "rejected") else ""
        parts.append(f'<span class="{cls}">{escape(text)}</span>')
    return "<br>".join(parts)


def _firmware(device: DeviceRow) -> str:
    state = device.reported or {}
    fw = state.get("fw")
    impl = state.get("impl")
    if fw is None and impl is None:
        return ""
    return escape(" ".join(str(x) for x in (fw, impl) if x is not None))


def _consent(device: DeviceRow) -> str:
    tier = consent_service.effective(device)
    if tier is None:
        return '<span class="empty">not reported</span>'
    text = escape(tier)
    if device.consent_cap is not None and device.consent_cap_version is not None:
        text += f"<br><small>capped in the cloud (config v{device.consent_cap_version})</small>"
    return text


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _vitals(device: DeviceRow) -> str:
    state = device.reported or {}
    parts = []
    if isinstance(state.get("heap_low"), int):
        parts.append(f"heap low {state['heap_low']} B")
    if isinstance(state.get("uptime_s"), int):
        parts.append(f"up {format_duration(state['uptime_s'])}")
    if isinstance(state.get("reconnects"), int):
        n = state["reconnects"]
        parts.append(f"{n} reconnect{'' if n == 1 else 's'}")
    return "<br>".join(escape(p) for p in parts)


def _quarantined(count: int, conflicts: int) -> str:
    if not conflicts:
        return str(count)
    return f"{count}<br><small>{conflicts} conflict{'' if conflicts == 1 else 's'}</small>"


def online_cell(state: Drift) -> str:
    word = "online" if state.online else "offline"
    return f'<span class="{word}">{word}</span>'


def drift_cell(state: Drift) -> str:
    cls = escape(state.status.replace(" ", "-"))
    return (f'<span class="drift {cls}" data-drift="{escape(state.status)}">'
            f"{escape(state.status)}</span>"
            + (f"<br><small>{escape(state.reason)}</small>" if state.drifting else ""))


def device_row(device: DeviceRow, state: Drift, now_ms: int, quarantined: int = 0) -> str:
    seen = format_time(device.last_seen_ms)
    age = format_age(device.last_seen_ms, now_ms)
    stale = device.last_seen_ms is None or now_ms - device.last_seen_ms > STALE_AFTER_MS
    up = state.online
    desired = state.desired_version
    cells = [
        _cell(f'<a href="{escape(device_href(device.id))}"><strong>{escape(device.id)}</strong></a>'),
        _cell(escape(device.product or "")),
        _cell(link(gateway_href(device.gateway), device.gateway) if device.gateway else ""),
        _cell("online" if up else "offline", "online" if up else "offline"),
        _cell(escape(seen) + (f"<br><small>{escape(age)}</small>" if age else ""),
              "stale" if stale else ""),
        _cell(str(device.last_seq), "num"),
        _cell(str(device.records), "num"),
        _cell(_quarantined(quarantined, device.conflicts),
              "num quarantined" if quarantined else "num"),
        _cell(_metrics(device.last_metrics)),
        _cell(_config(device, desired) + "<br>" + drift_cell(state)),
        _cell(_consent(device), "consent"),
        _cell(_vitals(device), "vitals"),
        _cell(_firmware(device)),
    ]
    return f'<tr data-device="{escape(device.id)}">' + "".join(cells) + "</tr>"


def _gaps(status: GatewayStatus) -> str:
    if not status.gaps:
        return ""
    lines = [f"<strong>{status.gaps}</strong>"] + [
        escape(f"batch {g.seq} ({g.records} records): {g.gap_status} {g.gap_reason}")
        for g in status.latest_gaps
    ]
    return "<br>".join(lines)


def gateway_row(status: GatewayStatus) -> str:
    gateway = status.gateway
    return (
        f'<tr data-gateway="{escape(gateway.id)}">'
        + _cell(f'<a href="{escape(gateway_href(gateway.id))}"><strong>{escape(gateway.id)}</strong></a>')
        + _cell(str(gateway.last_seq), "num")
        + _cell(escape(format_time(gateway.last_batch_ms)))
        + _cell(_gaps(status), "gaps" if status.gaps else "")
        + "</tr>"
    )


def quarantine_row(row: QuarantineRow) -> str:
    seq = "" if row.seq is None else str(row.seq)
    return (
        "<tr>"
        + _cell(escape(format_time(row.received_ms)))
        + _cell(escape(row.device or "(invalid id)"))
        + _cell(escape(row.kind))
        + _cell(escape(seq), "num")
        + _cell(escape(f"{row.gateway} batch {row.batch_seq}"))
        + _cell(escape(row.reason))
        + "</tr>"
    )


def _count_rows(pairs: list[tuple[str, int]], empty: str) -> str:
    if not pairs:
        return f'<tr><td colspan="2" class="empty">{escape(empty)}</td></tr>'
    return "\n".join(f"<tr><td>{escape(k)}</td><td class=\"num\">{n}</td></tr>" for k, n in pairs)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def alerts(overview: Overview, states: dict[str, Drift]) -> list[str]:
    """What needs a look, as HTML list items: quarantine, conflicts, rejected configs,
    gateways with gaps, devices gone quiet."""
    out = []
    for d in overview.devices:
        href = device_href(d.id)
        quarantined = overview.quarantined.get(d.id, 0)
        if quarantined:
            out.append(f"{link(href, d.id)}: {_plural(quarantined, 'item')} in quarantine")
        if d.conflicts:
            out.append(f"{link(href, d.id)}: {_plural(d.conflicts, 'conflict')}")
        state = states[d.id]
        if state.status == "rejected":
            out.append(f"{link(href, d.id)}: config v{state.desired_version} rejected: "
                       f"{escape(state.reason)}")
    for g in overview.gateways:
        if g.gaps:
            out.append(f"{link(gateway_href(g.gateway.id), g.gateway.id)}: "
                       f"{_plural(g.gaps, 'gap')} in its chain (refused batches)")
    offline = [d for d in overview.devices if not states[d.id].online]
    if offline:
        names = ", ".join(link(device_href(d.id), d.id) for d in offline[:10])
        more = f" and {len(offline) - 10} more" if len(offline) > 10 else ""
        out.append(f"{_plural(len(offline), 'device')} offline: {names}{more}")
    return out


def dashboard(overview: Overview, states: dict[str, Drift], now_ms: int, refresh_s: int,
              dev: bool, viewer: Viewer | None = None) -> str:
    devices = overview.devices
    if devices:
        rows = "\n".join(
            device_row(d, states[d.id], now_ms, overview.quarantined.get(d.id, 0))
            for d in devices
        )
    else:
        rows = '<tr><td colspan="13" class="empty">No devices yet.</td></tr>'
    if overview.gateways:
        gw_rows = "\n".join(gateway_row(g) for g in overview.gateways)
    else:
        gw_rows = '<tr><td colspan="4" class="empty">No gateways registered.</td></tr>'
    if overview.latest_quarantined:
        q_rows = "\n".join(quarantine_row(q) for q in overview.latest_quarantined)
    else:
        q_rows = '<tr><td colspan="6" class="empty">Nothing in quarantine.</td></tr>'
    tally = fleet.tally(devices, states)
    quarantined = sum(overview.quarantined.values())
    summary = (
        f"{len(devices)} devices ({tally.online} online, {tally.offline} offline) &middot; "
        f"{len(overview.gateways)} gateways &middot; {overview.records} records &middot; "
        f"{overview.batches} batches &middot; {quarantined} quarantined"
    )
    items = alerts(overview, states)
    alert_html = (
        '<ul class="alerts" id="alerts">' + "".join(f"<li>{a}</li>" for a in items) + "</ul>"
        if items else '<p class="empty" id="alerts">No alerts.</p>'
    )
    body = template("dashboard.html").substitute(
        refresh=int(refresh_s),
        summary=summary,
        updated=escape(format_time(now_ms)),
        dev_badge=' &middot; <span class="dev">dev mode: open without token</span>' if dev else "",
        firmware_rows=_count_rows(tally.firmware, "no devices"),
        drift_rows=_count_rows(tally.drift, "no devices"),
        consent_rows=_count_rows(tally.consent, "no devices"),
        alerts=alert_html,
        device_rows=rows,
        gateway_rows=gw_rows,
        quarantine_rows=q_rows,
    )
    return layout(f"fleetloop: {len(devices)} devices", body, refresh_s=refresh_s, viewer=viewer)
