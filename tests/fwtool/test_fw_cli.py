"""fwtool.cli through typer's CliRunner: help, defaults, clean errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from fwtool.cli import app
from fwtool.keys import KeyLayout
from typer.testing import CliRunner

runner = CliRunner()


def _group_commands() -> dict[str, Any]:
    commands: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return commands


def _commands() -> list[str]:
    return sorted(_group_commands())


def test_commands() -> None:
    assert _commands() == ["build", "crl", "diff", "enrol", "flash", "keygen", "provision", "verify"]


@pytest.mark.parametrize("command", _commands())
def test_every_command_help_ends_with_an_example(command: str) -> None:
    doc = _group_commands()[command].help or ""
    assert doc.strip().splitlines()[-1].startswith("Example: fleetloop fw " + command)
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_keygen_defaults(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keygen", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lay = KeyLayout.of_home(tmp_path)
    assert lay.gateway_batch_pub("gw-1").is_file()
    for dev in ("bike-1", "mirror-1", "engine-1"):
        assert lay.device_key_der(dev).is_file()
    again = runner.invoke(app, ["keygen", "--home", str(tmp_path)])
    assert again.exit_code == 0
    assert "up to date" in again.output


def test_keygen_home_from_env_and_repeatable_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keygen", "-g", "gw-a", "-g", "gw-b", "--device", "x-1"],
                           env={"FLEETLOOP_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    lay = KeyLayout.of_home(tmp_path)
    assert sorted(p.name for p in lay.gateways_dir.iterdir()) == ["gw-a", "gw-b"]
    assert [p.name for p in lay.devices_dir.iterdir()] == ["x-1"]


def test_keygen_force(tmp_path: Path) -> None:
    runner.invoke(app, ["keygen", "--home", str(tmp_path), "-d", "bike-1"])
    ca = KeyLayout.of_home(tmp_path).ca_cert_pem.read_bytes()
    result = runner.invoke(app, ["keygen", "--home", str(tmp_path), "-d", "bike-1", "--force"])
    assert result.exit_code == 0
    assert KeyLayout.of_home(tmp_path).ca_cert_pem.read_bytes() != ca


def test_bad_id_is_a_clean_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keygen", "--home", str(tmp_path), "--device", "a/b"])
    assert result.exit_code == 2
    assert "invalid device id 'a/b'" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_provision(tmp_path: Path) -> None:
    runner.invoke(app, ["keygen", "--home", str(tmp_path), "-d", "bike-1"])
    result = runner.invoke(app, ["provision", "--home", str(tmp_path), "--id", "bike-1",
                                 "--profile", "bike", "--broker", "127.0.0.1:18883"])
    assert result.exit_code == 0, result.output
    identity = json.loads((tmp_path / "devices" / "bike-1" / "identity.json").read_text())
    assert (identity["broker_host"], identity["broker_port"]) == ("127.0.0.1", 18883)
    out = tmp_path / "elsewhere"
    result = runner.invoke(app, ["provision", "--home", str(tmp_path), "--id", "bike-1",
                                 "--profile", "bike", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "identity.json").read_text())["broker_port"] == 8883


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--id", "bike-1", "--profile", "car"], 2, "unknown profile"),
    (["--id", "bike-1", "--profile", "bike", "--broker", "nohost"], 2, "host:port"),
    (["--id", "ghost-1", "--profile", "bike"], 1, "fleetloop fw keygen"),
    (["--id", "../x", "--profile", "bike"], 2, "invalid device id"),
])
def test_provision_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    runner.invoke(app, ["keygen", "--home", str(tmp_path), "-d", "bike-1"])
    result = runner.invoke(app, ["provision", "--home", str(tmp_path), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
