"""Settings: defaults, environment, explicit values, validation, derived paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import SettingsError
from gateway.settings import Settings, describe


def test_defaults_follow_the_contract() -> None:
    s = Settings.build(env={})
    assert (s.home, s.gateway_id, s.mqtt_port, s.status_port) == (Path(".fleetloop"), "gw-1",
                                                                 8883, 8884)
    assert s.cloud_url == "http://127.0.0.1:8000"
    assert s.token_path == Path(".fleetloop/gateways/gw-1/token")
    assert s.db_path == Path(".fleetloop/gateways/gw-1/gateway.db")
    assert s.broker_dir == Path(".fleetloop/gateways/gw-1/broker")
    assert s.run_file == Path(".fleetloop/gateways/gw-1/run.json")
    assert (s.min_reconnect_ms, s.reconnect_rate, s.hint_interval_s) == (None, 100, 30.0)


def test_explicit_beats_env_beats_default(tmp_path: Path) -> None:
    env = {"FLEETLOOP_HOME": str(tmp_path), "FLEETLOOP_MQTT_PORT": "1999",
           "FLEETLOOP_BATCH_SIZE": "50"}
    s = Settings.build(env=env, mqtt_port=2999, status_port=None)
    assert s.home == tmp_path and s.mqtt_port == 2999 and s.batch_max_records == 50
    assert s.status_port == 8884


@pytest.mark.parametrize("kw, message", [
    ({"gateway_id": "gw/1"}, "invalid gateway id"),
    ({"mqtt_port": 0}, "mqtt_port"),
    ({"mqtt_port": 9000, "status_port": 9000}, "must differ"),
    ({"cloud_url": "ftp://x"}, "http"),
    ({"batch_max_records": 20001}, "batch size"),
    ({"commit_max": 5000}, "commit_max"),
    ({"retry_min_s": 5.0, "retry_max_s": 1.0}, "retry_max_s"),
    ({"min_reconnect_ms": -1}, "min_reconnect_ms must be an int in 0..600000"),
    ({"min_reconnect_ms": 600001}, "min_reconnect_ms must be an int in 0..600000"),
    ({"min_reconnect_ms": 1.5}, "min_reconnect_ms"),
    ({"reconnect_rate": 0}, "reconnect_rate"),
    ({"hint_interval_s": 0.0}, "hint_interval_s"),
])
def test_invalid_settings_are_refused_with_a_reason(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.build(env={}, **kw)


def test_the_hint_settings_come_from_the_environment_too() -> None:
    s = Settings.build(env={"FLEETLOOP_MIN_RECONNECT_MS": "600000",
                            "FLEETLOOP_RECONNECT_RATE": "250"})
    assert (s.min_reconnect_ms, s.reconnect_rate) == (600000, 250)
    assert Settings.build(env={"FLEETLOOP_MIN_RECONNECT_MS": "0"}).min_reconnect_ms == 0
    with pytest.raises(SettingsError, match="min_reconnect_ms"):
        Settings.build(env={"FLEETLOOP_MIN_RECONNECT_MS": "600001"})


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="FLEETLOOP_MQTT_PORT"):
        Settings.build(env={"FLEETLOOP_MQTT_PORT": "eighty"})


def test_every_setting_has_an_env_name_and_help() -> None:
    rows = describe()
    assert len({env for _, env, _ in rows}) == len(rows)
    assert all(env.startswith("FLEETLOOP_") and help_ for _, env, help_ in rows)
