"""What is wrong with a gateway, as data: pure functions from a status dict to Problems.

A status dict comes from the status endpoint (a running gateway), from the disk (a stopped one,
gateway.diag_offline) or from an older or newer gateway: every key is read with `.get` and
every value checked for its type, so an odd dict yields fewer findings, never an exception.
`diag` shows the problems first, then the detail; its exit code says whether there were any.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SILENT_AFTER_S = 15 * 60  # a device whose last state is older than this stopped reporting
RECONNECT_LOOP_PER_H = 12  # more reconnects an hour of uptime than this is a loop
RECONNECT_LOOP_MIN = 5  # ... once there were at least this many
SPOOL_OLD_S = 10 * 60  # data older than this waiting for the cloud: the spool is growing
SPOOL_BUDGET_SHARE = 0.8  # the spool's budget this full is a warning
CLOCK_OFFSET_S = 60.0  # a clock this far from the cloud's makes records and tokens odd
CERT_WARN_DAYS = 30
DISK_LOW_SHARE = 0.05
DISK_LOW_BYTES = 200 * 1024 * 1024


class Severity(enum.Enum):
    CRITICAL = "critical"  # data stops flowing or will be lost
    WARNING = "warning"  # degraded, or will become critical if left


@dataclass(frozen=True)
class Problem:
    code: str  # stable, for scripts: e.g. "broker_down"
    severity: Severity
    message: str  # what is wrong, in plain words (may quote a device: never markup)
    check: str  # what the technician should check or do

    def to_obj(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity.value, "message": self.message,
                "check": self.check}


# -- typed reads of an untrusted dict (the rendering in gateway.diag uses them too) -------------

def _at(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def dict_at(obj: Any, key: str) -> dict[str, Any]:
    value = _at(obj, key)
    return value if isinstance(value, dict) else {}


def list_at(obj: Any, key: str) -> list[Any]:
    value = _at(obj, key)
    return value if isinstance(value, list) else []


def int_at(obj: Any, key: str) -> int:
    value = _at(obj, key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_num(value: Any) -> float | None:
    """A finite number as float, else None (bools, strings, NaN and infinities are none)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def num_at(obj: Any, key: str) -> float | None:
    return as_num(_at(obj, key))


def str_at(obj: Any, key: str) -> str | None:
    value = _at(obj, key)
    return value if isinstance(value, str) and value else None


def _p(code: str, sev: Severity, message: str, check: str) -> Problem:
    return Problem(code, sev, message, check)


CRIT, WARN = Severity.CRITICAL, Severity.WARNING

# -- the checks ---------------------------------------------------------------------------------

def broker(st: dict[str, Any], now_ms: int) -> list[Problem]:
    b, ingest = dict_at(st, "broker"), dict_at(st, "ingest")
    out = []
    if "broker" in st and b.get("up") is not True:
        out.append(_p("broker_down", CRIT, f"the broker (Mosquitto, port {b.get('port')}) is down",
                      "its log broker/mosquitto.log under the gateway's directory (the last "
                      "lines say why); whether another program holds the port"))
    if int_at(b, "restarts"):
        out.append(_p("broker_restarts", WARN, f"the broker restarted {int_at(b, 'restarts')} "
                      "time(s) since the gateway started",
                      "broker/mosquitto.log for the reason; memory (dmesg for the OOM killer)"))
    if "ingest" in st and ingest.get("link") != "up" and b.get("up") is True:
        out.append(_p("mqtt_link_down", CRIT, "the gateway is not connected to its own broker",
                      "the gateway log for the MQTT error; its certificate (see certificates)"))
    return out


def _device_rows(st: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in list_at(dict_at(st, "vitals"), "devices")
            if isinstance(v, dict) and isinstance(v.get("device"), str)]


def devices(st: dict[str, Any], now_ms: int) -> list[Problem]:
    online = {d for d in list_at(dict_at(st, "devices"), "online") if isinstance(d, str)}
    silent, looping = [], []
    for v in _device_rows(st):
        name = v["device"]
        seen = num_at(v, "received_ms")
        if name not in online and seen is not None and now_ms - seen > SILENT_AFTER_S * 1000:
            silent.append(f"{name} ({(now_ms - seen) / 60000:.0f} min)")
        reconnects, uptime = int_at(v, "reconnects"), num_at(v, "uptime_s")
        if reconnects >= RECONNECT_LOOP_MIN and uptime is not None and (
                reconnects * 3600 > RECONNECT_LOOP_PER_H * max(uptime, 1.0)):
            looping.append(f"{name} ({reconnects} in {uptime / 60:.0f} min)")
    out = []
    if silent:
        out.append(_p("devices_silent", WARN,
                      f"{len(silent)} device(s) stopped reporting: " + ", ".join(silent[:10]),
                      "power and network at the device; its link error in the devices table; "
                      "whether its certificate was revoked (diag --json: revocations)"))
    if looping:
        out.append(_p("device_reconnect_loop", WARN,
                      f"{len(looping)} device(s) reconnect in a loop: " + ", ".join(looping[:10]),
                      "Wi-Fi signal (rssi in the devices table); a second device with the same "
                      "certificate (the broker log shows it knocked off); the device's link error"))
    return out


def spool(st: dict[str, Any], now_ms: int) -> list[Problem]:
    sp = dict_at(st, "spool")
    out = []
    age, size, budget = num_at(sp, "oldest_age_s"), num_at(sp, "bytes"), num_at(sp, "budget_bytes")
    if age is not None and age > SPOOL_OLD_S:
        out.append(_p("spool_growing", WARN, f"data waits for the cloud for {age / 60:.0f} min "
                      f"({int_at(sp, 'batches')} batches, {int_at(sp, 'records')} records)",
                      "the uplink line (why uploads fail); the site's internet connection"))
    if size is not None and budget and size > SPOOL_BUDGET_SHARE * budget:
        out.append(_p("spool_near_budget", WARN, f"the spool holds {size / budget:.0%} of its "
                      "budget: past it the oldest batches are dropped (and reported as a gap)",
                      "why uploads fail; the spool budget setting"))
    if int_at(sp, "dropped_batches"):
        out.append(_p("spool_dropped", CRIT, f"{int_at(sp, 'dropped_batches')} batch(es) "
                      f"({int_at(sp, 'dropped_records')} records) dropped over the spool's budget "
                      "(the cloud shows the gap)",
                      "how long uploads have been failing; the spool budget setting"))
    if int_at(sp, "dead_letters"):
        out.append(_p("dead_letters", WARN, f"{int_at(sp, 'dead_letters')} batch(es) refused by "
                      "the cloud and kept as dead letters (the cloud recorded a gap for each)",
                      "the reason shown under spool; gateway.db table dead_letters; the cloud's "
                      "gateway page"))
    return out


def _uplink_hint(error: str) -> str:
    text = error.lower()
    if "401" in text or "403" in text or "token" in text:
        return ("the gateway's cloud token (<gateway dir>/token): register again with "
                "`fleetloop gateway register`")
    if "409" in text or "chain" in text:
        return "the cloud's gateway page (chain head) against the spool's chain head"
    if any(w in text for w in ("connect", "timeout", "timed out", "resolve", "name or service")):
        return "the site's internet connection, DNS, a proxy or firewall; the cloud URL setting"
    return "the gateway log around the error; the cloud's status"


def uplink(st: dict[str, Any], now_ms: int) -> list[Problem]:
    up = dict_at(st, "uplink")
    error = str_at(up, "last_error")
    ok_ms, err_ms = num_at(up, "last_ok_ms") or 0, num_at(up, "last_error_ms") or 0
    if not error or (ok_ms and ok_ms >= err_ms):  # no success since, or none at all
        return []
    return [_p("uplink_failing", CRIT, f"uploads to the cloud fail: {error}", _uplink_hint(error))]


def clock(st: dict[str, Any], now_ms: int) -> list[Problem]:
    offset = num_at(dict_at(st, "clock"), "offset_s")
    if offset is None or abs(offset) <= CLOCK_OFFSET_S:
        return []
    side = "ahead of" if offset > 0 else "behind"
    return [_p("clock_offset", WARN, f"this box's clock is {abs(offset):.0f} s {side} the cloud's",
               "NTP on the box (timedatectl); a dead RTC battery")]


def certificates(st: dict[str, Any], now_ms: int) -> list[Problem]:
    out = []
    for c in list_at(st, "certificates"):
        if not isinstance(c, dict):
            continue
        name, left = str_at(c, "name") or "?", num_at(c, "days_left")
        if str_at(c, "error"):
            out.append(_p("certificate_unreadable", CRIT, f"certificate {name}: {c['error']}",
                          "the keys directory; `fleetloop fw keygen` for this home"))
        elif left is not None and left <= CERT_WARN_DAYS:
            expired = left <= 0
            out.append(_p("certificate_expired" if expired else "certificate_expiring",
                          CRIT if expired else WARN,
                          f"certificate {name} " + ("has expired" if expired
                                                    else f"expires in {left:.0f} day(s)"),
                          f"renew it with the factory's keys ({str_at(c, 'path') or 'keys/'}); "
                          "devices refuse an expired broker or CA certificate"))
    return out


def disk(st: dict[str, Any], now_ms: int) -> list[Problem]:
    d = dict_at(st, "disk")
    free, total = num_at(d, "free_bytes"), num_at(d, "total_bytes")
    if free is None or not total:
        return []
    if d.get("full") is True or free < min(DISK_LOW_SHARE * total, DISK_LOW_BYTES):
        return [_p("disk_full" if d.get("full") is True else "disk_low",
                   CRIT if d.get("full") is True else WARN,
                   f"disk nearly full: {free / 2**20:.0f} MiB free of {total / 2**30:.1f} GiB "
                   f"under {str_at(d, 'path') or '?'}",
                   "what fills it (du -sh under the gateway home; logs; the update cache)")]
    return []


def ingest(st: dict[str, Any], now_ms: int) -> list[Problem]:
    ing, quar = dict_at(st, "ingest"), dict_at(st, "quarantine")
    out = []
    if ing.get("acking") is False:
        out.append(_p("ingest_paused", CRIT, "the gateway does not take data: "
                      + (str_at(ing, "paused_reason") or "reason not given"),
                      "disk space; devices keep their records meanwhile"))
    if int_at(ing, "rejected"):
        reasons = ing.get("reject_reasons")
        top = (sorted(((str(k), v) for k, v in reasons.items() if isinstance(v, int)),
                      key=lambda kv: -kv[1]) if isinstance(reasons, dict) else [])
        out.append(_p("messages_rejected", WARN, f"{int_at(ing, 'rejected')} message(s) refused "
                      "since start" + (": " + "; ".join(f"{n} x {r}" for r, n in top[:3])
                                       if top else ""),
                      "the device's firmware version (an old or foreign format); the reasons "
                      "in diag --json"))
    if int_at(quar, "total"):
        out.append(_p("messages_quarantined", WARN, f"{int_at(quar, 'total')} message(s) in "
                      "quarantine", "the quarantine list below (device, topic, reason); "
                      "gateway.db table quarantine"))
    return out


def parts(st: dict[str, Any], now_ms: int) -> list[Problem]:
    out = []
    crashed = {k: v for k, v in dict_at(st, "worker_restarts").items()
               if isinstance(v, int) and not isinstance(v, bool) and v > 0}
    if crashed:
        out.append(_p("part_restarted", WARN, "parts restarted after a crash: "
                      + ", ".join(f"{k} x{v}" for k, v in sorted(crashed.items(), key=str)),
                      "the gateway log (gateway.log) for the traceback"))
    down_err = str_at(dict_at(st, "downlink"), "last_error")
    if down_err:
        out.append(_p("config_downlink", WARN, f"config downlink: {down_err}",
                      "the cloud's reachability; the gateway's token"))
    hint_err = str_at(dict_at(st, "hint"), "last_error")
    if hint_err:
        out.append(_p("hint_error", WARN, f"back-pressure hint: {hint_err}", "the gateway log"))
    return out


def updates(st: dict[str, Any], now_ms: int) -> list[Problem]:
    up = dict_at(st, "updates")
    out = [_p("update_bundle_refused", WARN,
              f"update bundle {r.get('key')} refused: {r.get('reason')} (tried {r.get('tries')} "
              f"time(s), next in {r.get('retry_in_s')} s)",
              "the release key (keys/release.pub) against the release's; the cloud's bundle")
           for r in list_at(dict_at(up, "cache"), "refused") if isinstance(r, dict)]
    if int_at(up, "problems_total"):
        said = [str(p) for p in list_at(up, "problems")[:3]]
        out.append(_p("update_offers_refused", WARN, f"{int_at(up, 'problems_total')} update "
                      "offer(s) from the cloud refused: " + "; ".join(said),
                      "the rollout in the cloud (fleetloop rollout status)"))
    if str_at(up, "last_error"):
        out.append(_p("updates_error", WARN, f"updates: {up['last_error']}",
                      "the cloud's reachability; the gateway log"))
    return out


def down(st: dict[str, Any], now_ms: int) -> list[Problem]:
    """A stopped gateway (gateway.diag_offline puts `down` in the dict it reads from disk)."""
    d = dict_at(st, "down")
    if not d:
        return []
    return [_p("gateway_down", CRIT, f"gateway {st.get('gateway')} is not running: "
               + (str_at(d, "why") or "reason unknown"),
               str_at(d, "todo") or "start it with `fleetloop gateway run`")]


CHECKS: tuple[Callable[[dict[str, Any], int], list[Problem]], ...] = (
    down, broker, ingest, uplink, spool, disk, certificates, clock, devices, parts, updates)


def find(st: Any, now_ms: int) -> list[Problem]:
    """Every problem in a status dict, critical ones first (stable order within a severity)."""
    if not isinstance(st, dict):
        return []
    found = [p for check in CHECKS for p in check(st, now_ms)]
    return sorted(found, key=lambda p: p.severity is not Severity.CRITICAL)
