"""The gateway as users run it: `python -m gateway run|diag` (= `fleetloop gateway ...`) as real
child processes, SIGTERM and kill -9, and the diag output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from gwkit import (
    GATEWAY,
    ROOT,
    Child,
    Device,
    FakeCloud,
    child_status,
    gateway_settings,
    start_child_gateway,
    wait_for,
)
from typer.testing import CliRunner

from gateway.cli import app
from gateway.procs import pid_alive
from gateway.settings import Settings
from protocol import state as state_codec

STATUS_KEYS = {"gateway", "broker", "devices", "ingest", "spool", "uplink", "inbox"}


def _cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "COLUMNS": "250"})  # diag's tables unwrapped


def _status(s: Settings) -> dict | None:  # type: ignore[type-arg]
    return child_status(s)


def _start(children: Callable[..., Child], s: Settings, tmp_path: Path, name: str) -> Child:
    return start_child_gateway(children, s, tmp_path / f"{name}.log")


@pytest.mark.parametrize("command", ["run", "diag", "ping"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example: fleetloop gateway " + command in result.output


def test_diag_without_a_running_gateway_is_a_clean_error(tmp_path: Path) -> None:
    result = _cli("diag", "--home", str(tmp_path), "--id", GATEWAY)
    assert result.returncode == 2  # nothing of gw-1 there: a wrong --home or --id
    assert result.stderr.startswith("error: no gateway gw-1 under")
    assert "Traceback" not in result.stderr + result.stdout
    run = tmp_path / "gateways" / GATEWAY / "run.json"
    run.parent.mkdir(parents=True)
    port = gateway_settings(tmp_path, "http://127.0.0.1:1").status_port
    run.write_text(json.dumps({"pid": 1, "mqtt_port": 1,
                               "status_url": f"http://127.0.0.1:{port}/status"}))
    result = _cli("diag", "--home", str(tmp_path), "--json")
    assert result.returncode == 3, result.stderr  # not running: read from its files
    assert json.loads(result.stdout)["problems"][0]["code"] == "gateway_down"


def test_run_without_keys_is_a_clean_error(tmp_path: Path) -> None:
    result = _cli("run", "--home", str(tmp_path), "--mqtt-port", "1", "--status-port", "2")
    assert result.returncode == 1
    assert "missing gateway keys" in result.stderr and "fleetloop fw keygen" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_option_values_are_clean_errors(tmp_path: Path) -> None:
    result = _cli("run", "--home", str(tmp_path), "--id", "gw/1")
    assert result.returncode == 1 and "invalid gateway id" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_diag_and_sigterm(home: Path, cloud: FakeCloud, tmp_path: Path,
                              children: Callable[..., Child],
                              devices: Callable[..., Device]) -> None:
    s = gateway_settings(home, cloud.url, min_reconnect_ms=2500)
    child = _start(children, s, tmp_path, "gateway")
    run = json.loads(s.run_file.read_text())
    assert run == {"pid": child.pid, "mqtt_port": s.mqtt_port, "status_url": s.status_url}
    bike = devices(home, "bike-1", s.mqtt_port)
    bike.publish("fleet/bike-1/status", b"online", retain=True)
    for seq in range(1, 51):
        bike.send(seq)
    vitals = {"v": 2, "d": "bike-1", "i": bike.incarnation, "t": 1, "why": "heartbeat",
              "consent": "usage", "heap_low": 6800, "uptime_s": 90, "buffered": 3,
              "reconnects": 7, "config_status": "rejected", "config_version": 2,
              "reason": "unknown key"}
    bike.publish("fleet/bike-1/state", state_codec.encode(vitals, bike.mac))
    wait_for(lambda: len(cloud.records) == 50 and cloud.states, 15, "50 records in the cloud")
    wait_for(lambda: (_status(s) or {}).get("hint", {}).get("min_reconnect_ms") == 2500, 10,
             "the hint published")

    out = _cli("diag", "--home", str(home), "--json")
    assert out.returncode == 1, out.stderr  # problems found: 7 reconnects in 90 s
    st = json.loads(out.stdout)
    assert [p["code"] for p in st["problems"]] == ["device_reconnect_loop"], st["downlink"]
    assert STATUS_KEYS <= set(st)
    assert st["gateway"] == GATEWAY and st["broker"]["port"] == s.mqtt_port
    assert set(st["broker"]) >= {"up", "pid", "port", "restarts"}
    assert st["devices"]["online"] == ["bike-1"] and st["devices"]["known"] == 1
    assert set(st["ingest"]) >= {"records", "duplicates", "rejected"}
    assert set(st["spool"]) >= {"batches", "records"}
    assert set(st["uplink"]) >= {"last_ok_ms", "last_error", "sent_batches"}
    assert st["hint"]["min_reconnect_ms"] == 2500 and st["hint"]["source"] == "setting"
    [got] = st["vitals"]["devices"]
    assert {k: got[k] for k in vitals if k not in ("v", "d", "i")} == {
        k: v for k, v in vitals.items() if k not in ("v", "d", "i")}
    text = _cli("diag", "--home", str(home))
    assert text.returncode == 1 and "bike-1" in text.stdout
    assert "1 device(s) reconnect in a loop: bike-1 (7 in 2 min)" in text.stdout
    flat = " ".join(text.stdout.split())
    assert "devices wait at least 2500 ms before reconnecting" in flat
    assert "fixed by the min_reconnect_ms setting" in flat
    [row] = [ln for ln in text.stdout.splitlines() if ln.startswith("bike-1")]
    for shown in ("yes", "usage", "6800 B", "90s", "3 rec", " 7 ", "config 2 rejected"):
        assert shown in row, shown

    broker_pid = st["broker"]["pid"]
    os.kill(child.pid, signal.SIGTERM)
    assert child.popen is not None and child.popen.wait(20) == 0
    assert not pid_alive(broker_pid)
    assert not s.run_file.exists()
    assert "Traceback" not in child.log()


def test_kill_9_leaves_no_broker_and_a_restart_loses_nothing(
        home: Path, cloud: FakeCloud, tmp_path: Path, children: Callable[..., Child],
        devices: Callable[..., Device]) -> None:
    s = gateway_settings(home, cloud.url)
    first = _start(children, s, tmp_path, "gateway-1")
    broker_pid = _status(s)["broker"]["pid"]  # type: ignore[index]
    bike = devices(home, "bike-1", s.mqtt_port)
    for seq in range(1, 301):
        bike.client.publish("fleet/bike-1/telemetry", bike.record(seq), qos=1)
    os.killpg(first.pid, signal.SIGKILL)
    first.popen.wait(5)  # type: ignore[union-attr]
    wait_for(lambda: not pid_alive(broker_pid), 10, "broker gone with its gateway")

    _start(children, s, tmp_path, "gateway-2")
    bike.client.disconnect()
    bike.client.loop_stop()
    again = devices(home, "bike-1", s.mqtt_port)
    for seq in range(max(bike.acked, 0) + 1, 301):  # the device resends what is not acked
        again.client.publish("fleet/bike-1/telemetry", again.record(seq), qos=1)
    wait_for(lambda: again.acked == 300, 60, "ack 300")
    wait_for(lambda: len(cloud.records) == 300, 60, "300 records in the cloud")
    assert cloud.seqs("bike-1") == list(range(1, 301)) and not cloud.refusals


def test_a_restart_replaces_an_orphaned_broker(home: Path, cloud: FakeCloud, tmp_path: Path,
                                               children: Callable[..., Child]) -> None:
    """If a broker of ours survived (e.g. it was started by a thread that is still alive
    elsewhere), the next start terminates it instead of failing on the busy port."""
    s = gateway_settings(home, cloud.url)
    first = _start(children, s, tmp_path, "gateway-1")
    broker_pid = _status(s)["broker"]["pid"]  # type: ignore[index]
    os.kill(first.pid, signal.SIGSTOP)  # a hung gateway: its broker keeps the port
    try:
        _start(children, gateway_settings(home, cloud.url, mqtt_port=s.mqtt_port), tmp_path,
               "gateway-2")
        assert not pid_alive(broker_pid)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        time.sleep(0.1)
