"""The generated Mosquitto config and ACL: what they must say (NOTES: defaults that lose data)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.broker_config import BrokerConfig, render_acl, render_config, write_config
from gateway.errors import SettingsError
from gateway.keys import GatewayKeys
from gateway.settings import Settings


def _cfg(tmp_path: Path) -> BrokerConfig:
    return BrokerConfig(directory=tmp_path / "broker", bind="127.0.0.1", port=12345,
                        keys=GatewayKeys.under(tmp_path, "gw-1"), gateway_id="gw-1",
                        user="someone", max_inflight=1000, max_queued_bytes=1 << 28,
                        autosave_s=1)


def _directives(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.setdefault(key, value)
    return out


def test_acl_confines_devices_to_their_own_topics() -> None:
    lines = [ln for ln in render_acl("gw-1").splitlines() if ln and not ln.startswith("#")]
    assert lines == [
        "user gw-1",
        "topic readwrite fleet/#",
        "user _technician",  # gateway ping: writes pings, reads pongs, nothing else
        "topic write fleet/+/ping",
        "topic read fleet/+/pong",
        "pattern write fleet/%u/telemetry",
        "pattern write fleet/%u/state",
        "pattern write fleet/%u/status",
        "pattern write fleet/%u/fetch",
        "pattern write fleet/%u/pong",
        "pattern read fleet/%u/ack",
        "pattern read fleet/%u/config",
        "pattern read fleet/%u/update",
        "pattern read fleet/%u/chunk",
        "pattern read fleet/%u/ping",
        "pattern read fleet/hint",  # every device reads the hint; only the gateway writes it
    ]


def test_config_has_mtls_identity_and_no_anonymous(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    d = _directives(render_config(cfg))
    assert d["listener"] == "12345 127.0.0.1"
    assert d["require_certificate"] == "true"
    assert d["use_identity_as_username"] == "true"
    assert d["use_username_as_clientid"] == "true"
    assert d["allow_anonymous"] == "false"
    assert d["acl_file"] == str(cfg.acl_path)
    assert d["cafile"] == str(tmp_path / "keys" / "ca.crt.pem")
    assert d["certfile"] == str(tmp_path / "keys" / "broker.crt.pem")
    assert d["keyfile"] == str(tmp_path / "keys" / "broker.key.pem")
    assert d["user"] == "someone"
    assert d["pid_file"] == str(cfg.pid_path)


def test_config_does_not_drop_queued_or_inflight_messages(tmp_path: Path) -> None:
    d = _directives(render_config(_cfg(tmp_path)))
    assert d["max_queued_messages"] == "0"  # no count limit (default 1000 drops silently)
    assert int(d["max_queued_bytes"]) >= 64 * 1024 * 1024
    assert int(d["max_inflight_messages"]) >= 500  # >= the ingest commit group
    assert d["persistence"] == "true"
    assert d["persistence_location"].startswith(str(tmp_path / "broker"))
    assert int(d["autosave_interval"]) <= 5
    assert d["autosave_on_changes"] == "false"


def test_written_files_are_private(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    write_config(cfg)
    for path in (cfg.conf_path, cfg.acl_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cfg.data_dir.is_dir()
    assert cfg.conf_path.read_text() == render_config(cfg)


def test_observers_read_every_device_and_write_nothing() -> None:
    acl = render_acl("gw-1", ("tap-1",))
    block = acl.split("user tap-1\n", 1)[1].split("\n\n", 1)[0]
    assert block == "topic read fleet/#"
    assert render_acl("gw-1").count("user ") == 2  # the gateway and the technician: no observer unless asked for


def test_an_observer_must_be_a_valid_cn_other_than_the_gateway() -> None:
    assert Settings.build(env={}, observers=("tap-1",)).observers == ("tap-1",)
    assert Settings.build(env={"FLEETLOOP_OBSERVERS": "tap-1,tap-2"}).observers == ("tap-1", "tap-2")
    for bad in ("gw-1", "a/b", "#"):
        with pytest.raises(SettingsError, match="observer"):
            Settings.build(env={}, observers=(bad,))
