from __future__ import annotations

from pathlib import Path

import pytest
from cloudkit import ADMIN_TOKEN
from typer.main import get_command
from typer.testing import CliRunner

from cloud.cli import app as cli_app
from cloud.errors import SettingsError
from cloud.main import create_app
from cloud.settings import DEFAULT_ADMIN_TOKEN, Settings


def test_default_admin_token_refused_outside_dev(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, env={"FLEETLOOP_ADMIN_TOKEN": DEFAULT_ADMIN_TOKEN})
    with pytest.raises(SettingsError, match="default admin token"):
        create_app(settings)


def test_no_bootstrap_admin_outside_dev_is_fine(tmp_path: Path) -> None:
    # only the database's tokens then (the first admin token is made offline)
    settings = Settings.load(home=tmp_path, env={})
    assert settings.admin_token is None
    create_app(settings)


def test_default_admin_token_accepted_in_dev(tmp_path: Path) -> None:
    assert Settings.load(home=tmp_path, dev=True, env={}).admin_token == DEFAULT_ADMIN_TOKEN
    create_app(Settings.load(home=tmp_path, env={"FLEETLOOP_DEV": "1"}))
    create_app(Settings.load(home=tmp_path, dev=True, env={}))


def test_short_or_blank_admin_token_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="at least"):
        create_app(Settings.load(home=tmp_path, admin_token="short", env={}))
    with pytest.raises(SettingsError, match="empty"):
        create_app(Settings.load(home=tmp_path, admin_token="", dev=True, env={}))


def test_env_and_defaults(tmp_path: Path) -> None:
    s = Settings.load(env={"FLEETLOOP_HOME": str(tmp_path)})
    assert s.home == tmp_path
    assert s.db_path == tmp_path / "cloud" / "cloud.db"
    assert s.config_key_path == tmp_path / "keys" / "config.key.pem"
    assert s.dev is False
    s = Settings.load(
        home=tmp_path,
        env={
            "FLEETLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLEETLOOP_CLOUD_DB": str(tmp_path / "x.db"),
            "FLEETLOOP_CONFIG_KEY": str(tmp_path / "k.pem"),
            "FLEETLOOP_DEV": "true",
        },
    )
    assert (s.admin_token, s.db_path, s.config_key_path, s.dev) == (
        ADMIN_TOKEN, tmp_path / "x.db", tmp_path / "k.pem", True
    )
    # explicit arguments win over the environment
    assert Settings.load(dev=False, env={"FLEETLOOP_DEV": "1"}).dev is False
    assert Settings.load(env={}).home == Path(".fleetloop")


def test_cli_serve_refuses_default_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLEETLOOP_DEV", "FLEETLOOP_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEETLOOP_ADMIN_TOKEN", DEFAULT_ADMIN_TOKEN)
    result = CliRunner().invoke(cli_app, ["serve", "--home", str(tmp_path), "--port", "0"])
    assert result.exit_code == 2
    assert "default admin token" in result.output
    assert not (tmp_path / "cloud").exists()


def test_every_command_has_help_with_an_example() -> None:
    group = get_command(cli_app)
    assert group.help and "Example:" in group.help
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, name
        assert command.help.strip().splitlines()[-1].startswith("Example:"), name
