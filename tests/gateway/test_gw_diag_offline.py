"""`diag` when the gateway is not running: it reads the files (gateway.db read-only, its own
log, the broker's log, a run.json left behind) and says why it stopped and what to do, exit
code 3. The gateway runs as `fleetloop gateway run` would (a child process) with the cloud
failing, then is killed with SIGKILL, stopped with SIGTERM, or fails at its start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tarfile
from collections.abc import Callable
from pathlib import Path

from gwkit import (
    Child,
    Device,
    FakeCloud,
    child_status,
    gateway_argv,
    gateway_settings,
    start_child_gateway,
    wait_for,
)
from typer.testing import CliRunner

from gateway import diag_offline
from gateway.cli import app
from gateway.diag import EXIT_DOWN
from gateway.settings import Settings


def _diag(s: Settings, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["diag", "--home", str(s.home), "--id", s.gateway_id,
                                      *extra],
                                env={"COLUMNS": "250", "FLEETLOOP_CLOUD_URL": s.cloud_url})
    return result.exit_code, result.output


def test_a_killed_gateway_is_diagnosed_from_its_files(
        home: Path, cloud: FakeCloud, tmp_path: Path, children: Callable[..., Child],
        devices: Callable[..., Device]) -> None:
    cloud.mode = "500"  # uploads fail: the spool grows and the log says why
    s = gateway_settings(home, cloud.url)
    child = start_child_gateway(children, s, tmp_path / "gw.log")
    bike = devices(home, "bike-1", s.mqtt_port)
    for seq in range(1, 21):
        bike.send(seq)
    wait_for(lambda: bike.acked == 20, 10, "20 acked")
    wait_for(lambda: ((child_status(s) or {}).get("spool") or {}).get("records") == 20, 10,
             "20 records spooled")
    wait_for(lambda: "cloud is having a bad day" in
             diag_offline.logfile.path(s.gateway_dir).read_text(), 10, "the error logged")
    code, out = _diag(s, "--json")  # running, uploads failing: problems found
    assert code == 1, out
    live = json.loads(out)
    assert "uplink_failing" in [p["code"] for p in live["problems"]]
    assert live["spool"]["records"] == 20 and live["spool"]["bytes"] > 0
    assert live["spool"]["oldest_age_s"] >= 0  # read from gateway.db beside the gateway

    os.killpg(child.pid, signal.SIGKILL)
    assert child.popen is not None and child.popen.wait(5) == -signal.SIGKILL

    code, out = _diag(s, "--json")
    assert code == EXIT_DOWN, out
    st = json.loads(out)
    assert st["down"]["kind"] == "crashed"
    assert f"process {child.pid} left its run.json behind" in st["down"]["why"]
    assert "start it again with `fleetloop gateway run" in st["down"]["todo"]
    assert st["spool"]["records"] == 20 and st["spool"]["oldest_age_s"] >= 0
    assert "cloud is having a bad day" in st["uplink"]["last_error"]
    codes = [p["code"] for p in st["problems"]]
    assert codes[0] == "gateway_down" and "uplink_failing" in codes
    assert st["broker_log_tail"], st  # what the broker said last
    assert {c["name"] for c in st["certificates"]} >= {"device CA", "broker", "gateway MQTT"}

    bundle = tmp_path / "down.tar.gz"  # a support bundle of a stopped gateway, too
    code, out = _diag(s, "--bundle", str(bundle))
    assert code == EXIT_DOWN, out
    with tarfile.open(bundle) as tf:
        names = {m.name.split("/", 1)[1]: m for m in tf.getmembers()}
        status = json.load(tf.extractfile(names["status.json"]))  # type: ignore[arg-type]
        spool = tf.extractfile(names["tables/spool.jsonl"]).read().decode()  # type: ignore[union-attr]
    assert status["down"]["kind"] == "crashed"
    head, *rows = [json.loads(line) for line in spool.splitlines()]
    assert head["table"] == "spool" and head["rows"] == len(rows) >= 1
    assert sum(r["records"] for r in rows) == 20
    assert set(rows[0]["body"]) == {"bytes", "sha256"}  # device data stays out

    code, text = _diag(s)
    assert code == EXIT_DOWN
    assert "gateway gw-1 is not running: it crashed or was killed" in text
    assert "20 records waiting for the cloud" in text

    # Started again and stopped with SIGTERM: a clean stop, said as such.
    child = start_child_gateway(children, s, tmp_path / "gw2.log")
    os.killpg(child.pid, signal.SIGTERM)
    assert child.popen is not None and child.popen.wait(60) == 0  # a clean stop; slow on a loaded machine
    code, out = _diag(s, "--json")
    assert code == EXIT_DOWN and json.loads(out)["down"]["kind"] == "stopped"


def test_a_gateway_that_failed_at_its_start_says_the_error(
        home: Path, tmp_path: Path, children: Callable[..., Child]) -> None:
    s = gateway_settings(home, "http://127.0.0.1:1")
    shutil.rmtree(home / "keys" / "gateways")  # its own certificate and batch key are gone
    child = children(gateway_argv(s), tmp_path / "gw.log")
    assert child.popen is not None and child.popen.wait(30) == 1
    code, out = _diag(s, "--json")
    assert code == EXIT_DOWN, out
    st = json.loads(out)
    assert st["down"]["kind"] == "failed"
    assert "it stopped on an error: missing gateway keys" in st["down"]["why"]
    assert {"code": "certificate_unreadable"}.items() <= next(
        p for p in st["problems"] if p["code"] == "certificate_unreadable").items()


def test_the_last_run_is_read_from_the_log() -> None:
    lines = [
        "2026-12-05 06:00:00,000 INFO fleetloop.gateway: gateway gw-1 running: mqtt x",
        "2026-12-05 06:00:01,000 ERROR fleetloop.gateway: gateway stopped on an error: old",
        "2026-12-05 06:01:00,000 INFO fleetloop.gateway: gateway gw-1 running: mqtt x",
        "2026-12-05 06:01:02,000 WARNING fleetloop.gateway.uplink: cloud unreachable: "
        "ConnectError",
        "a line of a traceback",
        "2026-12-05 06:01:03,000 INFO fleetloop.gateway: stopping",
        "2026-12-05 06:01:04,000 INFO fleetloop.gateway: stopped",
    ]
    got = diag_offline.parse_log(lines)
    assert got == {"started": True, "stopped": True, "stopped_on": None, "last_error": None,
                   "uplink_error": "cloud unreachable: ConnectError"}
    assert diag_offline.parse_log(lines[:2])["stopped_on"] == "old"
    assert diag_offline.parse_log([])["started"] is False
