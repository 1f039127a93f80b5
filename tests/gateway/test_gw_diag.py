"""`diag` without a gateway: the problems found in a status dict (pure functions, checked over
odd dicts with hypothesis), problems shown first with what to check, the exit codes, and text
a device chose shown as it is (never read as markup)."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gateway import diag_problems
from gateway.diag import EXIT_DOWN, EXIT_OK, EXIT_PROBLEMS, exit_code, hint_text, render
from gateway.diag_problems import Severity

NOW = 10_000_000_000


def _text(status: dict[str, Any], now_ms: int = 1_000_000) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(render(status, now_ms=now_ms))
    return console.export_text()


def _vitals(device: str, **values: Any) -> dict[str, Any]:
    return {"device": device, "incarnation": 1, "t": 1, "received_ms": 990_000, **values}


def _codes(status: dict[str, Any]) -> list[str]:
    return [p.code for p in diag_problems.find(status, NOW)]


HEALTHY: dict[str, Any] = {
    "gateway": "gw-1", "pid": 42, "uptime_s": 3600, "version": "0.1.0",
    "broker": {"up": True, "pid": 43, "port": 8883, "restarts": 0},
    "ingest": {"link": "up", "records": 10, "rejected": 0, "acking": True},
    "devices": {"online": ["bike-1"], "known": 1},
    "spool": {"batches": 0, "records": 0, "oldest_age_s": None, "bytes": 0,
              "budget_bytes": 1 << 30},
    "uplink": {"last_ok_ms": NOW - 1000, "last_error": "500 earlier", "last_error_ms": NOW - 5000},
    "vitals": {"total": 1, "devices": [{"device": "bike-1", "received_ms": NOW - 1000,
                                        "reconnects": 3, "uptime_s": 86400}]},
    "certificates": [{"name": "broker", "days_left": 300.0}],
    "disk": {"path": "/", "free_bytes": 50 << 30, "total_bytes": 100 << 30, "full": False},
    "clock": {"offset_s": 1.0},
}


def test_a_healthy_gateway_has_no_problems_and_exits_0() -> None:
    assert diag_problems.find(HEALTHY, NOW) == []
    assert exit_code(HEALTHY, []) == EXIT_OK
    assert "OK: no problems found" in _text(HEALTHY, NOW)


def test_each_fault_is_found_with_what_to_check() -> None:
    faults: dict[str, dict[str, Any]] = {
        "broker_down": {"broker": {"up": False, "port": 8883}},
        "broker_restarts": {"broker": {"up": True, "restarts": 2}},
        "mqtt_link_down": {"ingest": {"link": "down"}},
        "devices_silent": {"devices": {"online": []}, "vitals": {"devices": [
            {"device": "bike-2", "received_ms": NOW - 3600_000}]}},
        "device_reconnect_loop": {"vitals": {"devices": [
            {"device": "bike-1", "received_ms": NOW, "reconnects": 40, "uptime_s": 600}]}},
        "spool_growing": {"spool": {"oldest_age_s": 7200, "batches": 9, "records": 9000}},
        "spool_near_budget": {"spool": {"bytes": 95, "budget_bytes": 100}},
        "spool_dropped": {"spool": {"dropped_batches": 2, "dropped_records": 2000}},
        "uplink_failing": {"uplink": {"last_ok_ms": NOW - 9000, "last_error": "401 bad token",
                                      "last_error_ms": NOW - 1000}},
        "clock_offset": {"clock": {"offset_s": -300.0}},
        "certificate_expiring": {"certificates": [{"name": "device CA", "days_left": 12.0}]},
        "certificate_expired": {"certificates": [{"name": "broker", "days_left": -1.0}]},
        "disk_low": {"disk": {"path": "/", "free_bytes": 10 << 20, "total_bytes": 8 << 30}},
        "disk_full": {"disk": {"free_bytes": 0, "total_bytes": 8 << 30, "full": True}},
        "ingest_paused": {"ingest": {"link": "up", "acking": False,
                                     "paused_reason": "disk full: 0 bytes free"}},
        "messages_rejected": {"ingest": {"link": "up", "rejected": 3,
                                         "reject_reasons": {"bad tag": 3}}},
        "messages_quarantined": {"quarantine": {"total": 4, "kept": 4, "latest": []}},
    }
    for code, change in faults.items():
        status = {**HEALTHY, **change}
        found = diag_problems.find(status, NOW)
        assert code in [p.code for p in found], (code, found)
        problem = next(p for p in found if p.code == code)
        assert problem.message and problem.check, problem
        assert exit_code(status, found) == EXIT_PROBLEMS


def test_the_spool_contract_keys_show_when_present() -> None:
    """Keys the spool's budget and quarantine bring (shared status contract), read with .get:
    shown when present, absent without harm (the healthy status above has none of them)."""
    status = {**HEALTHY,
              "spool": {"batches": 3, "records": 3000, "bytes": 3 << 20, "oldest_age_s": 90.0,
                        "budget_bytes": 64 << 20, "dropped_batches": 2,
                        "dropped_records": 2000},
              "uplink": {"last_ok_ms": NOW - 60_000, "last_error": "500 down",
                         "last_error_ms": NOW - 1000, "latency_ms": 12.5, "next_try_s": 4.0},
              "ingest": {"link": "up", "acking": False,
                         "paused_reason": "disk full: 0 bytes free under /var"},
              "quarantine": {"total": 7, "kept": 7, "latest": [
                  {"device": "bike-1", "topic": "fleet/bike-1/telemetry",
                   "reason": "[b]not JSON", "size": 12, "at_ms": NOW - 5000}]}}
    text = " ".join(_text(status, NOW).split())
    for shown in ("3 batches / 3000 records waiting for the cloud, 3.0 MiB of 64.0 MiB budget, "
                  "oldest 90s", "dropped over the budget: 2 batches, 2000 records",
                  "(next try in 4 s)", "last ok 60s ago, latency 12 ms",
                  "quarantine 7 message(s), 7 kept",
                  "5s ago bike-1 on fleet/bike-1/telemetry: [b]not JSON (12 B)",
                  "the gateway does not take data: disk full: 0 bytes free under /var"):
        assert shown in text, shown
    assert {"spool_dropped", "ingest_paused", "messages_quarantined", "uplink_failing"} <= set(
        _codes(status))


def test_why_uploads_fail_decides_what_to_check() -> None:
    def check(error: str) -> str:
        status = {**HEALTHY, "uplink": {"last_ok_ms": 0, "last_error": error,
                                        "last_error_ms": NOW}}
        [p] = [p for p in diag_problems.find(status, NOW) if p.code == "uplink_failing"]
        return p.check

    assert "token" in check("cloud refused the token (401)")
    assert "internet connection" in check("ConnectError: [Errno 111] Connection refused")
    assert "chain head" in check("409 chain conflict")


def test_critical_problems_come_before_warnings_and_before_the_detail() -> None:
    status = {**HEALTHY, "broker": {"up": False, "port": 8883, "restarts": 3}}
    found = diag_problems.find(status, NOW)
    assert [p.severity for p in found] == [Severity.CRITICAL, Severity.WARNING]
    text = _text(status, NOW)
    assert text.index("the broker (Mosquitto, port 8883) is down") < text.index("restarted 3")
    assert text.index("check: its log broker/mosquitto.log") < text.index("broker       down")


def test_a_stopped_gateway_exits_3_and_says_why() -> None:
    status = {"gateway": "gw-1", "down": {"why": "it crashed or was killed", "todo": "start it"},
              "log_tail": ["2026-12-05 06:00:00,000 ERROR fleetloop.gateway: boom"]}
    found = diag_problems.find(status, NOW)
    assert found[0].code == "gateway_down" and found[0].check == "start it"
    assert exit_code(status, found) == EXIT_DOWN
    text = _text(status, NOW)
    assert "gateway gw-1 is not running: it crashed or was killed" in text
    assert "NOT RUNNING" in text and "ERROR fleetloop.gateway: boom" in text


# -- odd dicts: never an exception ---------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
KEYS = st.sampled_from(["broker", "ingest", "devices", "spool", "uplink", "vitals", "clock",
                        "certificates", "disk", "quarantine", "worker_restarts", "downlink",
                        "hint", "updates", "down", "gateway", "inbox", "uptime_s"])
SUBKEYS = st.sampled_from(["up", "port", "restarts", "link", "acking", "rejected", "online",
                           "devices", "received_ms", "device", "reconnects", "uptime_s",
                           "oldest_age_s", "bytes", "budget_bytes", "dropped_batches",
                           "last_error", "last_ok_ms", "last_error_ms", "offset_s", "days_left",
                           "free_bytes", "total_bytes", "full", "total", "why", "cache",
                           "refused", "problems_total", "reject_reasons", "dead_letters"])
ODD = st.dictionaries(KEYS, JSON | st.dictionaries(SUBKEYS, JSON | st.lists(
    st.dictionaries(SUBKEYS, JSON, max_size=4), max_size=3), max_size=6), max_size=10)


@settings(max_examples=60, deadline=None)
@given(ODD, st.integers(min_value=0, max_value=2**53))
def test_problems_and_the_screen_from_any_dict_never_raise(status: dict[str, Any],
                                                           now_ms: int) -> None:
    """A status from an older or newer gateway, or read from damaged files: fewer findings
    and "-" on the screen, never a traceback."""
    found = diag_problems.find(status, now_ms)
    for p in found:
        assert isinstance(p.message, str) and p.check
        assert p.to_obj()["severity"] in ("critical", "warning")
    Console(width=120, file=io.StringIO()).print(render(status, now_ms=now_ms, found=found))


@given(JSON)
def test_problems_from_any_json_value_never_raise(value: Any) -> None:
    diag_problems.find(value, NOW)


# -- rendering -----------------------------------------------------------------------------------

def test_the_hint_line_says_what_is_in_effect_and_why() -> None:
    assert hint_text({}) == "-"
    assert hint_text({"min_reconnect_ms": None, "target_ms": 0, "source": "computed",
                      "known_devices": 0, "reconnect_rate": 100}) == (
        "not published yet (computed: 0 known devices at 100 connections/s; 0 ms waiting to "
        "be published)")
    assert hint_text({"min_reconnect_ms": 12000, "target_ms": 12000, "source": "setting"}) == (
        "devices wait at least 12000 ms before reconnecting (fixed by the min_reconnect_ms "
        "setting)")


def test_device_text_is_shown_as_it_is() -> None:
    """A refusal reason can quote a field name a device chose; a state's reason and link
    error are the device's words: brackets in them once could have broken the rendering."""
    status = {"ingest": {"rejected": 1,
                         "reject_reasons": {"bad state: unknown state field [/]": 1}},
              "vitals": {"total": 1, "devices": [_vitals(
                  "bike-1", reason="[bold]bad[/bold] [/]", config_status="rejected",
                  config_version=2, link_error="[red]", link_failures=3, reset_cause="crash",
                  resets=1, consent="essential", uptime_s=200000, buffered=0,
                  fw="[b]0.2.0", rssi=-71)]}}
    text = _text(status)
    assert "1 x bad state: unknown state field [/]" in text
    [row] = [ln for ln in text.splitlines() if ln.startswith("bike-1")]
    assert "config 2 rejected: [bold]bad[/bold] [/]; link: [red] (x3); reset: crash (x1)" in row
    assert "essential" in row and "2d" in row and "0 rec" in row
    assert "[b]0.2.0" in row and "-71 dBm" in row


def test_many_devices_are_cut_short_with_a_pointer_to_the_rest() -> None:
    rows = [_vitals(f"bike-{i:03d}", consent="usage") for i in range(60)]
    text = _text({"vitals": {"total": 300, "devices": rows}})
    assert "bike-049" in text and "bike-050" not in text
    assert "and 250 more device(s)" in text


def test_updates_show_the_cache_who_downloads_and_what_was_refused() -> None:
    status = {"updates": {
        "offers": 3, "problems_total": 1,
        "problems": ["offer entry refused: invalid device id 'bike/[/]'"],
        "last_error": None,
        "cache": {"budget_bytes": 64 * 1024 * 1024, "bytes": 2_500_000, "cloud_downloads": 2,
                  "bundles": [{"key": "bike-0.2.0", "bytes": 2_500_000, "downloads": 2,
                               "in_use": True}],
                  "refused": [{"key": "bike-0.3.0", "reason": "bad signature: not signed by "
                               "this release key", "tries": 2, "retry_in_s": 55}]},
        "serving": {"downloading": ["bike-1", "bike-2"], "concurrent": 16, "busy_replies": 4}}}
    text = _text(status)
    assert "updates  3 offers out, 2 of 16 download places taken, 4 busy replies" in text
    assert "cache 1 bundle(s), 2.4 MiB of 64.0 MiB, 2 cloud download(s)" in text
    assert "bike-0.2.0: 2.4 MiB, 2 cloud download(s), offered" in text
    assert ("! update bundle bike-0.3.0 refused: bad signature: not signed by this release key "
            "(tried 2 time(s), next in 55 s)") in text
    assert "! 1 update offer(s) from the cloud refused: offer entry refused: invalid device id " \
           "'bike/[/]'" in text
