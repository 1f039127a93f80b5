"""`diag` for field technicians: read a running gateway's status endpoint and show it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gateway.errors import DiagError
from gateway.status import RunInfo


def status_url(home: Path, gateway_id: str) -> str:
    """The status URL a running gateway wrote into its run.json."""
    path = home / "gateways" / gateway_id / "run.json"
    try:
        return RunInfo.read(path).status_url
    except FileNotFoundError:
        raise DiagError(f"gateway {gateway_id} is not running under {home} (no {path}); "
                        "start it with `fleetloop gateway run`") from None
    except (OSError, ValueError, KeyError) as exc:
        raise DiagError(f"cannot read {path}: {exc}") from exc


def fetch(url: str, timeout_s: float = 3.0) -> dict[str, Any]:
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise DiagError(f"gateway is not answering at {url} ({type(exc).__name__}): it is not "
                        "running or just stopped") from exc
    if resp.status_code != 200:
        raise DiagError(f"{url} answered {resp.status_code}: {resp.text[:200]}")
    try:
        body = resp.json()
    except ValueError as exc:
        raise DiagError(f"{url} did not answer JSON") from exc
    if not isinstance(body, dict):
        raise DiagError(f"{url} did not answer a JSON object")
    return body


def problems(st: dict[str, Any]) -> list[str]:
    """Plain-language findings a technician should act on."""
    out = []
    broker = st.get("broker", {})
    if not broker.get("up"):
        out.append("broker is down (see broker/mosquitto.log)")
    if broker.get("restarts"):
        out.append(f"broker restarted {broker['restarts']} time(s)")
    if st.get("ingest", {}).get("link") != "up":
        out.append("gateway is not connected to its broker")
    uplink = st.get("uplink", {})
    if uplink.get("last_error") and (uplink.get("last_ok_ms") or 0) < (uplink.get("last_error_ms") or 0):
        out.append(f"uplink failing: {uplink['last_error']}")
    dead = st.get("spool", {}).get("dead_letters")
    if dead:
        out.append(f"{dead} batch(es) refused by the cloud and kept as dead letters "
                   "(the cloud recorded a gap for each; see gateway.db table dead_letters)")
    if st.get("ingest", {}).get("rejected"):
        out.append(f"{st['ingest']['rejected']} message(s) refused since start")
    crashed = {k: v for k, v in (st.get("worker_restarts") or {}).items() if v}
    if crashed:
        out.append("parts restarted after a crash: "
                   + ", ".join(f"{k} x{v}" for k, v in sorted(crashed.items()))
                   + " (see the gateway log)")
    if st.get("downlink", {}).get("last_error"):
        out.append(f"config downlink: {st['downlink']['last_error']}")
    hint = st.get("hint") or {}
    if hint.get("last_error"):
        out.append(f"back-pressure hint: {hint['last_error']}")
    return out


def hint_text(hint: dict[str, Any]) -> str:
    """One line on the back-pressure hint in effect."""
    if not hint:
        return "-"
    in_effect = hint.get("min_reconnect_ms")
    head = ("not published yet" if in_effect is None
            else f"devices wait at least {in_effect} ms before reconnecting")
    if hint.get("source") == "setting":
        why = "fixed by the min_reconnect_ms setting"
    else:
        why = (f"computed: {hint.get('known_devices', 0)} known devices at "
               f"{hint.get('reconnect_rate')} connections/s")
    pending = hint.get("target_ms")
    if pending is not None and pending != in_effect:
        why += f"; {pending} ms waiting to be published"
    return f"{head} ({why})"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _num(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def vitals_reason(v: dict[str, Any]) -> str:
    """What the device's latest state says went wrong last, if anything: a rejected config's
    reason, its last link error, the cause of its last reset."""
    parts = []
    if v.get("config_status") == "rejected" or v.get("reason"):
        parts.append(f"config {v.get('config_version')} rejected: {v.get('reason') or '?'}")
    if v.get("link_error"):
        parts.append(f"link: {v['link_error']} (x{v.get('link_failures') or 1})")
    if v.get("reset_cause") not in (None, "none"):
        parts.append(f"reset: {v['reset_cause']} (x{v.get('resets') or 1})")
    return "; ".join(parts) or "-"


def vitals_table(vitals: dict[str, Any], now_ms: int, limit: int = 50) -> Table | None:
    """Per device, its latest state's vitals; None when no device sent any."""
    rows = vitals.get("devices") or []
    if not rows:
        return None
    table = Table(title="device vitals (latest state)", title_justify="left", box=None,
                  pad_edge=False)
    for name in ("device", "state", "why", "consent", "heap low", "uptime", "buffer",
                 "reconnects", "hint", "reason"):
        table.add_column(name)
    for v in rows[:limit]:
        buffered = v.get("buffered")
        buffer = "-" if buffered is None else f"{buffered} rec"
        if v.get("buffer_bytes") is not None:
            buffer += f" / {v['buffer_bytes']} B"
        table.add_row(str(v.get("device")), _age(v.get("received_ms"), now_ms),
                      _num(v.get("why")), _num(v.get("consent")), _num(v.get("heap_low"), " B"),
                      _duration(v.get("uptime_s")), buffer,
                      _num(v.get("reconnects")), _num(v.get("hint_ms"), " ms"),
                      Text(vitals_reason(v)))
    more = int(vitals.get("total") or len(rows)) - min(limit, len(rows))
    if more > 0:
        table.caption = f"... and {more} more device(s): `diag --json` or gateway.db"
    return table


def _age(ms: int | None, now_ms: int) -> str:
    if not ms:
        return "never"
    secs = max(0, (now_ms - ms) / 1000)
    return f"{secs:.0f}s ago" if secs < 120 else f"{secs / 60:.0f}min ago"


def render(st: dict[str, Any], now_ms: int | None = None) -> Group:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    broker, ingest = st.get("broker", {}), st.get("ingest", {})
    devices, spool = st.get("devices", {}), st.get("spool", {})
    uplink, downlink = st.get("uplink", {}), st.get("downlink", {})
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    up = "[green]up[/]" if broker.get("up") else "[red]down[/]"
    table.add_row("broker", f"{up}  pid {broker.get('pid')}  port {broker.get('port')}  "
                            f"restarts {broker.get('restarts', 0)}")
    table.add_row("mqtt link", str(ingest.get("link")))
    online = devices.get("online", [])
    table.add_row("devices", f"{len(online)} online of {devices.get('known', 0)} known: "
                             + (", ".join(online) if online else "-"))
    table.add_row("ingest", f"{ingest.get('records', 0)} records, {ingest.get('states', 0)} states, "
                            f"{ingest.get('duplicates', 0)} duplicates, "
                            f"{ingest.get('rejected', 0)} refused")
    reasons = sorted((ingest.get("reject_reasons") or {}).items(), key=lambda kv: -kv[1])
    for reason, n in reasons[:5]:
        # A reason can quote what a device sent: never read as markup.
        table.add_row("", Text(f"{n} x {reason}", style="yellow"))
    table.add_row("inbox", f"{st.get('inbox', 0)} records waiting for a batch")
    table.add_row("spool", f"{spool.get('batches', 0)} batches / {spool.get('records', 0)} records "
                           f"waiting for the cloud (chain head {spool.get('head_seq')})")
    for d in spool.get("latest_dead_letters") or []:
        table.add_row("", Text(f"dead letter: batch {d['seq']} ({d['records']} records) refused "
                               f"{_age(d['dead_ms'], now_ms)} with {d['status']}: {d['reason']}",
                               style="red"))
    table.add_row("uplink", f"{uplink.get('sent_batches', 0)} batches sent, last ok "
                            f"{_age(uplink.get('last_ok_ms'), now_ms)}")
    if uplink.get("last_error"):
        table.add_row("", Text(f"last error {_age(uplink.get('last_error_ms'), now_ms)}: "
                               f"{uplink['last_error']}", style="red"))
    table.add_row("configs", f"revision {downlink.get('revision')}, "
                             f"{downlink.get('published', 0)} published")
    table.add_row("hint", hint_text(st.get("hint") or {}))
    found = problems(st)
    verdict = (Text("OK", style="bold green") if not found
               else Text("\n".join("! " + p for p in found), style="bold red"))
    title = f"gateway {st.get('gateway')}  pid {st.get('pid')}  up {st.get('uptime_s', 0):.0f}s"
    vitals = vitals_table(st.get("vitals") or {}, now_ms)
    parts: list[Any] = [Panel(table, title=title, title_align="left")]
    if vitals is not None:
        parts.append(vitals)
    return Group(*parts, verdict)
