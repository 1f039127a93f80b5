"""Server-rendered dashboard HTML: no scripts, no external resources, every value escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from importlib import resources
from string import Template
from typing import Any

from cloud.services import consent as consent_service
from cloud.services.gateways import GatewayStatus
from cloud.services.telemetry import Overview
from cloud.store import DeviceRow, QuarantineRow

# Headers for the page: nothing may load from elsewhere, nothing may run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

STALE_AFTER_MS = 5 * 60 * 1000

_template: Template | None = None


def _page() -> Template:
    global _template
    if _template is None:
        text = resources.files("cloud.templates").joinpath("dashboard.html").read_text("utf-8")
        _template = Template(text)
    return _template


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


def device_row(device: DeviceRow, desired: int | None, now_ms: int, quarantined: int = 0) -> str:
    seen = format_time(device.last_seen_ms)
    age = format_age(device.last_seen_ms, now_ms)
    stale = device.last_seen_ms is None or now_ms - device.last_seen_ms > STALE_AFTER_MS
    cells = [
        _cell(f"<strong>{escape(device.id)}</strong>"),
        _cell(escape(device.product or "")),
        _cell(escape(device.gateway or "")),
        _cell(escape(seen) + (f"<br><small>{escape(age)}</small>" if age else ""),
              "stale" if stale else ""),
        _cell(str(device.last_seq), "num"),
        _cell(str(device.records), "num"),
        _cell(_quarantined(quarantined, device.conflicts),
              "num quarantined" if quarantined else "num"),
        _cell(_metrics(device.last_metrics)),
        _cell(_config(device, desired)),
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
        + _cell(f"<strong>{escape(gateway.id)}</strong>")
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


def dashboard(overview: Overview, now_ms: int, refresh_s: int, dev: bool) -> str:
    devices = overview.devices
    if devices:
        rows = "\n".join(
            device_row(
                d, overview.desired_versions.get(d.id), now_ms, overview.quarantined.get(d.id, 0)
            )
            for d in devices
        )
    else:
        rows = '<tr><td colspan="12" class="empty">No devices yet.</td></tr>'
    if overview.gateways:
        gw_rows = "\n".join(gateway_row(g) for g in overview.gateways)
    else:
        gw_rows = '<tr><td colspan="4" class="empty">No gateways registered.</td></tr>'
    if overview.latest_quarantined:
        q_rows = "\n".join(quarantine_row(q) for q in overview.latest_quarantined)
    else:
        q_rows = '<tr><td colspan="6" class="empty">Nothing in quarantine.</td></tr>'
    counts = overview.counts
    summary = (
        f"{len(devices)} devices &middot; {len(overview.gateways)} gateways &middot; "
        f"{counts.get('telemetry', 0)} records &middot; {counts.get('batches', 0)} batches"
        f" &middot; {counts.get('quarantine', 0)} quarantined"
    )
    return _page().substitute(
        refresh=int(refresh_s),
        device_count=len(devices),
        summary=summary,
        updated=escape(format_time(now_ms)),
        dev_badge=' &middot; <span class="dev">dev mode: open without token</span>' if dev else "",
        device_rows=rows,
        gateway_rows=gw_rows,
        quarantine_rows=q_rows,
    )
