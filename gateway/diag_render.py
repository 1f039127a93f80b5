"""`diag`'s screen: the problems first, each with what to check, then the detail (identity and
version, broker, devices, ingest, spool, uplink, updates, certificates, disk, clock), the
devices table, and for a stopped gateway the tails of its logs.

The status may come from an older or newer gateway, or from its files: every value is read
through the typed readers of gateway.diag_problems, so an odd one shows as "-", never a crash.
Text a device chose (reasons, ids, firmware names) is always a rich Text, never markup.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gateway.diag_problems import Problem, Severity, as_num, dict_at, int_at, list_at, num_at
from gateway.diag_problems import find as find_problems


def _bytes(value: Any) -> str:
    n = int(as_num(value) or 0)
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / (1024 * 1024):.1f} MiB"


def _duration(value: Any) -> str:
    number = as_num(value)
    if number is None:
        return "-"
    seconds = int(number)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _num(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def _age(value: Any, now_ms: int) -> str:
    ms = as_num(value)
    if not ms:
        return "never"
    secs = max(0.0, (now_ms - ms) / 1000)
    return f"{secs:.0f}s ago" if secs < 120 else f"{_duration(secs)} ago"


def problems_panel(found: list[Problem]) -> RenderableType:
    if not found:
        return Text("OK: no problems found", style="bold green")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for p in found:
        style = "bold red" if p.severity is Severity.CRITICAL else "bold yellow"
        # Text, never markup: a message may quote what a device sent.
        grid.add_row(Text("!", style=style), Text(p.message, style=style))
        grid.add_row("", Text(f"check: {p.check}"))
    return Panel(grid, title=f"{len(found)} problem(s)", title_align="left",
                 border_style="red" if found[0].severity is Severity.CRITICAL else "yellow")


def hint_text(hint: Any) -> str:
    """One line on the back-pressure hint in effect."""
    if not hint or not isinstance(hint, dict):
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


def updates_rows(updates: dict[str, Any]) -> list[tuple[str, str | Text]]:
    """The diag lines about updates: offers, the cache, who downloads now."""
    if not updates:
        return []
    cache, serving = dict_at(updates, "cache"), dict_at(updates, "serving")
    bundles = [b for b in list_at(cache, "bundles") if isinstance(b, dict)]
    rows: list[tuple[str, str | Text]] = [
        ("updates", Text(f"{updates.get('offers', 0)} offers out, "
                         f"{len(list_at(serving, 'downloading'))} of {serving.get('concurrent')} "
                         f"download places taken, {serving.get('busy_replies', 0)} busy replies")),
        ("", f"cache {len(bundles)} bundle(s), {_bytes(cache.get('bytes'))} of "
             f"{_bytes(cache.get('budget_bytes'))}, {cache.get('cloud_downloads', 0)} cloud "
             "download(s)")]
    for b in bundles[:5]:
        rows.append(("", Text(f"{b.get('key')}: {_bytes(b.get('bytes'))}, "
                              f"{b.get('downloads')} cloud download(s)"
                              + (", offered" if b.get("in_use") else ""))))
    return rows


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


DEVICE_COLUMNS = ("device", "online", "last seen", "firmware", "buffer", "drops", "reconnects",
                  "hint", "heap low", "consent", "rssi", "uptime", "last trouble")


def devices_table(st: dict[str, Any], now_ms: int, limit: int = 50) -> Table | None:
    """Per device: online now, its latest state's vitals; None when no device sent any."""
    vitals = dict_at(st, "vitals")
    rows = [v for v in list_at(vitals, "devices") if isinstance(v, dict)]
    if not rows:
        return None
    online = {d for d in list_at(dict_at(st, "devices"), "online") if isinstance(d, str)}
    table = Table(title="devices (latest state of each)", title_justify="left", box=None,
                  pad_edge=False)
    for name in DEVICE_COLUMNS:
        table.add_column(name)
    for v in rows[:limit]:
        buffered = v.get("buffered")
        buffer = "-" if buffered is None else f"{buffered} rec"
        if v.get("buffer_bytes") is not None:
            buffer += f" / {v['buffer_bytes']} B"
        # Every cell holds what a device chose: Text, never read as markup.
        table.add_row(*(Text(cell) for cell in (
            str(v.get("device")), "yes" if v.get("device") in online else "no",
            _age(v.get("received_ms"), now_ms), _num(v.get("fw")), buffer,
            _num(v.get("dropped")), _num(v.get("reconnects")), _num(v.get("hint_ms"), " ms"),
            _num(v.get("heap_low"), " B"), _num(v.get("consent")), _num(v.get("rssi"), " dBm"),
            _duration(v.get("uptime_s")), vitals_reason(v))))
    total = as_num(vitals.get("total"))
    more = int(total if total is not None else len(rows)) - min(limit, len(rows))
    if more > 0:
        table.caption = f"... and {more} more device(s): `diag --json` or gateway.db"
    return table


def _broker_rows(table: Table, st: dict[str, Any]) -> None:
    broker, ingest, devices = dict_at(st, "broker"), dict_at(st, "ingest"), dict_at(st, "devices")
    online = [str(d) for d in list_at(devices, "online")]
    if "broker" in st:
        up = "[green]up[/]" if broker.get("up") is True else "[red]down[/]"
        table.add_row("broker", up + escape(f"  pid {broker.get('pid')}  port "
                                            f"{broker.get('port')}  {len(online)} device "
                                            f"client(s)  restarts {broker.get('restarts', 0)}"))
        table.add_row("mqtt link", Text(str(ingest.get("link"))))
        table.add_row("devices", Text(f"{len(online)} online of {devices.get('known', 0)} "
                                      "known: " + (", ".join(online) or "-")))
    elif devices:
        table.add_row("devices", Text(f"{devices.get('known', 0)} known"))
    if "ingest" in st:
        table.add_row("ingest", Text(f"{ingest.get('records', 0)} records, "
                                     f"{ingest.get('states', 0)} states, "
                                     f"{ingest.get('duplicates', 0)} duplicates, "
                                     f"{ingest.get('rejected', 0)} refused"))
        reasons = [(str(r), int_at(dict_at(ingest, "reject_reasons"), r))
                   for r in dict_at(ingest, "reject_reasons")]
        for reason, n in sorted(reasons, key=lambda kv: -kv[1])[:5]:
            # A reason can quote what a device sent: never read as markup.
            table.add_row("", Text(f"{n} x {reason}", style="yellow"))


def _spool_rows(table: Table, st: dict[str, Any], now_ms: int) -> None:
    spool = dict_at(st, "spool")
    table.add_row("inbox", Text(f"{st.get('inbox', 0)} records waiting for a batch"))
    size = f", {_bytes(spool['bytes'])}" if spool.get("bytes") is not None else ""
    if spool.get("budget_bytes"):
        size += f" of {_bytes(spool['budget_bytes'])} budget"
    oldest = _duration(spool.get("oldest_age_s"))
    head = f" (chain head {spool['head_seq']})" if "head_seq" in spool else ""
    table.add_row("spool", Text(f"{spool.get('batches', 0)} batches / "
                                f"{spool.get('records', 0)} records waiting for the cloud"
                                f"{size}, oldest {oldest}{head}"))
    if int_at(spool, "dropped_batches"):
        table.add_row("", Text(f"dropped over the budget: {int_at(spool, 'dropped_batches')} "
                               f"batches, {int_at(spool, 'dropped_records')} records",
                               style="red"))
    for d in list_at(spool, "latest_dead_letters"):
        d = d if isinstance(d, dict) else {}
        table.add_row("", Text(f"dead letter: batch {d.get('seq')} ({d.get('records')} records) "
                               f"refused {_age(d.get('dead_ms'), now_ms)} with "
                               f"{d.get('status')}: {d.get('reason')}", style="red"))
    quarantine = dict_at(st, "quarantine")
    if quarantine:
        table.add_row("quarantine", Text(f"{quarantine.get('total', 0)} message(s), "
                                         f"{quarantine.get('kept', quarantine.get('total', 0))} "
                                         "kept"))
        for q in list_at(quarantine, "latest")[:5]:
            q = q if isinstance(q, dict) else {}
            table.add_row("", Text(f"{_age(q.get('at_ms'), now_ms)} {q.get('device') or '?'} "
                                   f"on {q.get('topic')}: {q.get('reason')} "
                                   f"({q.get('size')} B)", style="yellow"))


def _uplink_rows(table: Table, st: dict[str, Any], now_ms: int) -> None:
    uplink, downlink = dict_at(st, "uplink"), dict_at(st, "downlink")
    if uplink and st.get("down"):
        if uplink.get("last_error"):
            table.add_row("uplink", Text(f"last error in the log: {uplink['last_error']}",
                                         style="red"))
    elif uplink:
        latency = num_at(uplink, "latency_ms")
        table.add_row("uplink", Text(f"{uplink.get('sent_batches', 0)} batches sent, last ok "
                                     f"{_age(uplink.get('last_ok_ms'), now_ms)}"
                                     + (f", latency {latency:.0f} ms" if latency is not None
                                        else "")))
        if uplink.get("last_error"):
            retry = num_at(uplink, "next_try_s")
            table.add_row("", Text(f"last error {_age(uplink.get('last_error_ms'), now_ms)}: "
                                   f"{uplink['last_error']}"
                                   + (f" (next try in {retry:.0f} s)" if retry is not None
                                      else ""), style="red"))
    if downlink:
        table.add_row("configs", Text(f"revision {downlink.get('revision')}, "
                                      f"{downlink.get('published', 0)} published"))
    if st.get("hint"):
        table.add_row("hint", Text(hint_text(st.get("hint"))))
    for name, value in updates_rows(dict_at(st, "updates")):
        table.add_row(name, value)


def _local_rows(table: Table, st: dict[str, Any]) -> None:
    for c in list_at(st, "certificates"):
        c = c if isinstance(c, dict) else {}
        left = num_at(c, "days_left")
        state = (str(c["error"]) if c.get("error") else
                 f"until {str(c.get('not_after'))[:10]} "
                 f"({'-' if left is None else f'{left:.0f}'} days)")
        table.add_row("certificate", Text(f"{c.get('name')}: {state}"))
    disk = dict_at(st, "disk")
    total, free = num_at(disk, "total_bytes"), num_at(disk, "free_bytes") or 0.0
    if total:
        table.add_row("disk", Text(f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB "
                                   f"under {disk.get('path')}"))
    clock = dict_at(st, "clock")
    offset = num_at(clock, "offset_s")
    if offset is not None:
        table.add_row("clock", Text(f"{offset:+.0f} s against {clock.get('source')}"))


def _detail(st: dict[str, Any], now_ms: int) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    _broker_rows(table, st)
    _spool_rows(table, st, now_ms)
    _uplink_rows(table, st, now_ms)
    _local_rows(table, st)
    return table


def _title(st: dict[str, Any]) -> str:
    who = f"gateway {st.get('gateway')}  version {st.get('version') or st.get('diag_version')}"
    if st.get("down"):
        return f"{who}  NOT RUNNING (read from its files)"
    return f"{who}  pid {st.get('pid')}  up {_duration(st.get('uptime_s'))}"


def _log_tails(st: dict[str, Any]) -> list[RenderableType]:
    out: list[RenderableType] = []
    for key, title, n in (("log_tail", "gateway log (last lines)", 12),
                          ("broker_log_tail", "broker log (last lines)", 6)):
        lines = [str(line) for line in list_at(st, key)]
        if lines:
            out.append(Panel(Text("\n".join(lines[-n:])), title=title, title_align="left"))
    return out


def render(st: dict[str, Any], now_ms: int | None = None,
           found: list[Problem] | None = None) -> Group:
    """Problems first (each with what to check), then the detail."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    found = find_problems(st, now_ms) if found is None else found
    parts: list[RenderableType] = [problems_panel(found),
                                   Panel(_detail(st, now_ms), title=escape(_title(st)),
                                         title_align="left")]
    devices = devices_table(st, now_ms)
    if devices is not None:
        parts.append(devices)
    if st.get("down"):
        parts.extend(_log_tails(st))
    return Group(*parts)
