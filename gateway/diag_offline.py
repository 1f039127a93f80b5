"""`diag` for a gateway that is not running: what its files say.

Read without the gateway and without writing anything: gateway.db (read-only: spool depth and
age, dead letters, quarantine if the table is there, the devices' latest vitals), the
gateway's own log (why the last run ended, the last upload error), the broker's log tail,
run.json (left behind = the process died without its clean stop). The result is a status-like
dict (the same keys a running gateway's status uses, plus `down`), so the same problem checks
and the same rendering apply.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway import logfile
from gateway.procs import pid_alive
from gateway.settings import Settings
from gateway.store import VITALS

LOG_LINES = 40
_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<name>[\w.]+): (?P<msg>.*)$")
_STARTED = re.compile(r"^gateway \S+ running: ")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite_utils.Database]:
    """gateway.db opened read-only; `immutable` when even that fails (a directory the user
    cannot write: its WAL index cannot be made, and nobody writes the file anyway)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.Error:
        conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        yield sqlite_utils.Database(conn)
    finally:
        conn.close()


def _rows(db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return list(db.execute(sql, params).fetchall())


def db_state(path: Path, now_ms: int) -> dict[str, Any]:
    """spool / quarantine / vitals / devices, or {"db_error": ...}."""
    if not path.is_file():
        return {"db_error": f"no database at {path}"}
    try:
        with read_only(path) as db:
            tables = set(db.table_names())
            out: dict[str, Any] = {}
            if "spool" in tables:
                n, recs, size, oldest = _rows(db, "SELECT count(*), coalesce(sum(records), 0), "
                                                  "coalesce(sum(length(body)), 0), min(created_ms) "
                                                  "FROM spool")[0]
                out["spool"] = {"batches": n, "records": recs, "bytes": size,
                                "oldest_age_s": None if oldest is None
                                else round((now_ms - oldest) / 1000, 1)}
            if "dead_letters" in tables:
                out.setdefault("spool", {})["dead_letters"] = db["dead_letters"].count
            if "inbox" in tables:
                out["inbox"] = db["inbox"].count
            if "quarantine" in tables:
                latest = _rows(db, "SELECT device, topic, reason, size, at_ms FROM quarantine "
                                   "ORDER BY at_ms DESC LIMIT 20")
                out["quarantine"] = {"total": db["quarantine"].count, "latest": [
                    dict(zip(("device", "topic", "reason", "size", "at_ms"), r, strict=True))
                    for r in latest]}
            if "device_vitals" in tables:
                cols = ("device", "incarnation", "t", "received_ms", *VITALS)
                rows = _rows(db, f"SELECT {', '.join(cols)} FROM device_vitals ORDER BY device "
                                 "LIMIT 200")
                out["vitals"] = {"total": db["device_vitals"].count,
                                 "devices": [dict(zip(cols, r, strict=True)) for r in rows]}
            if "streams" in tables:
                known = _rows(db, "SELECT count(DISTINCT device) FROM streams")[0][0]
                out["devices"] = {"online": [], "known": known}
            return out
    except sqlite3.Error as exc:
        return {"db_error": f"cannot read {path}: {exc}"}


def parse_log(lines: list[str]) -> dict[str, Any]:
    """What the gateway's log says about its last run: started, stopped cleanly, the error it
    stopped on, the last error and the last upload error."""
    start = max((i for i, ln in enumerate(lines) if (m := _LINE.match(ln))
                 and _STARTED.match(m["msg"])), default=-1)
    found: dict[str, Any] = {"started": start >= 0, "stopped": False, "stopped_on": None,
                             "last_error": None, "uplink_error": None}
    for ln in lines[start + 1 if start >= 0 else 0:]:
        m = _LINE.match(ln)
        if not m:
            continue
        if m["msg"].startswith("gateway stopped on an error: "):
            found["stopped_on"] = m["msg"].removeprefix("gateway stopped on an error: ")
        if m["name"] == "fleetloop.gateway" and m["msg"] == "stopped":
            found["stopped"] = True
        if m["level"] in ("ERROR", "CRITICAL"):
            found["last_error"] = m["msg"]
        if m["name"] == "fleetloop.gateway.uplink" and m["level"] in ("WARNING", "ERROR"):
            found["uplink_error"] = m["msg"]
    return found


def _run_file(path: Path) -> tuple[int | None, str | None]:
    """(pid, problem) of a run.json left behind; (None, None) when there is none."""
    try:
        obj = json.loads(path.read_text())
        return int(obj["pid"]), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"run.json is unreadable ({exc})"


def why_down(s: Settings, log: dict[str, Any], have_db: bool) -> dict[str, str]:
    """{kind, why, todo}: the best account of the last run's end the files allow."""
    start = f"`fleetloop gateway run --home {s.home} --id {s.gateway_id}`"
    pid, bad = _run_file(s.run_file)
    restart = f"start it again with {start}: nothing is lost (its database and the broker's " \
              "persistence survive a crash)"
    if pid is not None and pid_alive(pid):
        return {"kind": "hung", "why": f"its process {pid} is alive but its status endpoint "
                "does not answer (hung, or still starting)",
                "todo": f"wait a few seconds and run diag again; if it stays, stop it "
                        f"(kill {pid}) and {restart}"}
    if pid is not None or bad:
        said = log["last_error"] and f"; the last error it logged: {log['last_error']}"
        return {"kind": "crashed", "why": f"it crashed or was killed (process {pid} left its "
                f"run.json behind, no clean stop){said or ''}",
                "todo": f"{restart}; if it happens again, check memory (dmesg for the OOM "
                        "killer) and the gateway log"}
    if log["stopped_on"]:
        return {"kind": "failed", "why": f"it stopped on an error: {log['stopped_on']}",
                "todo": f"fix what the error names, then {start}"}
    if log["stopped"]:
        return {"kind": "stopped", "why": "it was stopped cleanly (Ctrl-C or SIGTERM)",
                "todo": f"start it with {start}"}
    if not have_db:
        return {"kind": "never", "why": f"it has never run under {s.home} (no gateway.db)",
                "todo": f"check --home and --id; then {start}"}
    return {"kind": "unknown", "why": "it is not running, and its log does not say why",
            "todo": f"the system's log (journalctl) for the gateway's service; {restart}"}


def read(s: Settings, now_ms: int | None = None) -> dict[str, Any]:
    """The status of a stopped gateway, from its files."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    gw_log = logfile.tail(logfile.path(s.gateway_dir), 2000)
    parsed = parse_log(gw_log)
    state = db_state(s.db_path, now_ms)
    st: dict[str, Any] = {"gateway": s.gateway_id, "source": "disk", **state}
    st["down"] = why_down(s, parsed, s.db_path.is_file())
    if parsed["uplink_error"]:
        st["uplink"] = {"last_error": parsed["uplink_error"]}  # the log keeps no successes
    st["log_tail"] = gw_log[-LOG_LINES:]
    st["broker_log_tail"] = logfile.tail(s.broker_dir / "mosquitto.log", LOG_LINES)
    return st
