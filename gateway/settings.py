"""Every gateway setting and its default, in one frozen dataclass.

Precedence: explicit value (CLI option) > environment variable > default. Each field names its
environment variable in its metadata, so `Settings.build` needs no per-field code and the help
text of the CLI and this file cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.errors import SettingsError
from protocol.hint import MAX_HINT_MS
from protocol.home import DEFAULT_HOME, ENV_HOME
from protocol.topics import valid_device_id


def _setting(default: Any, env: str, convert: Callable[[str], Any], help: str) -> Any:
    return field(default=default, metadata={"env": env, "convert": convert, "help": help})


def _path(text: str) -> Path:
    return Path(text).expanduser()


@dataclass(frozen=True)
class Settings:
    home: Path = _setting(Path(DEFAULT_HOME), ENV_HOME, _path, "fleetloop home directory")
    gateway_id: str = _setting("gw-1", "FLEETLOOP_GATEWAY_ID", str, "gateway id (= its cert CN)")
    mqtt_host: str = _setting("127.0.0.1", "FLEETLOOP_MQTT_HOST", str,
                              "address the broker listens on and the gateway connects to")
    mqtt_port: int = _setting(8883, "FLEETLOOP_MQTT_PORT", int, "broker TLS port")
    status_port: int = _setting(8884, "FLEETLOOP_STATUS_PORT", int,
                                "local status endpoint port (127.0.0.1)")
    cloud_url: str = _setting("http://127.0.0.1:8000", "FLEETLOOP_CLOUD_URL", str, "cloud base URL")
    token_file: Path | None = _setting(None, "FLEETLOOP_GATEWAY_TOKEN_FILE", _path,
                                       "file holding the gateway's cloud token")
    batch_max_records: int = _setting(1000, "FLEETLOOP_BATCH_SIZE", int,
                                      "records (and states) per signed batch")
    batch_interval_s: float = _setting(1.0, "FLEETLOOP_BATCH_INTERVAL_S", float,
                                       "seal a partial batch after this many seconds")
    commit_max: int = _setting(500, "FLEETLOOP_COMMIT_MAX", int,
                               "messages per ingest commit group")
    commit_window_s: float = _setting(0.005, "FLEETLOOP_COMMIT_WINDOW_S", float,
                                      "longest wait to fill an ingest commit group")
    retry_min_s: float = _setting(0.5, "FLEETLOOP_RETRY_MIN_S", float, "first uplink retry delay")
    retry_max_s: float = _setting(30.0, "FLEETLOOP_RETRY_MAX_S", float, "longest uplink retry delay")
    config_poll_s: float = _setting(2.0, "FLEETLOOP_CONFIG_POLL_S", float,
                                    "how often to ask the cloud for new configs")
    http_timeout_s: float = _setting(10.0, "FLEETLOOP_HTTP_TIMEOUT_S", float, "cloud HTTP timeout")
    revocation_poll_s: float = _setting(30.0, "FLEETLOOP_REVOCATION_POLL_S", float,
                                        "how often to ask the cloud for revoked devices and"
                                        " the device CA's newest CRL")
    mosquitto: str | None = _setting(None, "FLEETLOOP_MOSQUITTO", str, "mosquitto binary")
    broker_max_inflight: int = _setting(1000, "FLEETLOOP_BROKER_MAX_INFLIGHT", int,
                                        "QoS1 messages in flight per client")
    broker_max_queued_bytes: int = _setting(256 * 1024 * 1024, "FLEETLOOP_BROKER_MAX_QUEUED_BYTES",
                                            int, "bytes the broker queues per offline client")
    broker_autosave_s: int = _setting(1, "FLEETLOOP_BROKER_AUTOSAVE_S", int,
                                      "seconds between broker persistence saves")
    min_reconnect_ms: int | None = _setting(
        None, "FLEETLOOP_MIN_RECONNECT_MS", int,
        f"back-pressure hint to devices, fixed: least ms before a device reconnects "
        f"(0..{MAX_HINT_MS}; default: computed from known devices / reconnect_rate)")
    reconnect_rate: int = _setting(100, "FLEETLOOP_RECONNECT_RATE", int,
                                   "device connections per second a restarted broker should "
                                   "take (sets the computed back-pressure hint)")
    hint_interval_s: float = _setting(30.0, "FLEETLOOP_HINT_INTERVAL_S", float,
                                      "how often to recompute the back-pressure hint")
    observers: tuple[str, ...] = _setting(
        (), "FLEETLOOP_OBSERVERS", lambda text: tuple(x for x in text.split(",") if x),
        "certificate CNs the broker lets read every device's topics, never write (a site's "
        "monitoring or a technician's tap); comma-separated")

    def __post_init__(self) -> None:
        if not valid_device_id(self.gateway_id):
            raise SettingsError(
                f"invalid gateway id {self.gateway_id!r}: use 1-64 of [A-Za-z0-9_-], not starting "
                "with - or _"
            )
        for name in ("mqtt_port", "status_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise SettingsError(f"{name} must be 1..65535, got {port}")
        if self.mqtt_port == self.status_port:
            raise SettingsError("mqtt_port and status_port must differ")
        if not self.cloud_url.startswith(("http://", "https://")):
            raise SettingsError(f"cloud URL must start with http:// or https://: {self.cloud_url}")
        if not 1 <= self.batch_max_records <= 20000:
            raise SettingsError("batch size must be 1..20000 (protocol.batch.MAX_RECORDS)")
        if not 1 <= self.commit_max <= self.broker_max_inflight:
            raise SettingsError("commit_max must be 1..broker_max_inflight (else ingest stalls)")
        positive = ("batch_interval_s", "commit_window_s", "retry_min_s", "retry_max_s",
                    "config_poll_s", "http_timeout_s", "broker_autosave_s",
                    "broker_max_queued_bytes", "hint_interval_s", "revocation_poll_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be > 0")
        if self.retry_max_s < self.retry_min_s:
            raise SettingsError("retry_max_s must be >= retry_min_s")
        for name in self.observers:
            if not valid_device_id(name) or name == self.gateway_id:
                raise SettingsError(f"invalid observer {name!r}: a certificate CN of 1-64 of "
                                    "[A-Za-z0-9_-], not the gateway's own")
        fixed = self.min_reconnect_ms
        if fixed is not None and (type(fixed) is not int or not 0 <= fixed <= MAX_HINT_MS):
            raise SettingsError(f"min_reconnect_ms must be an int in 0..{MAX_HINT_MS} "
                                f"(protocol.hint.MAX_HINT_MS), got {fixed!r}")
        if type(self.reconnect_rate) is not int or not 1 <= self.reconnect_rate <= 1_000_000:
            raise SettingsError("reconnect_rate must be an int in 1..1000000 (connections per "
                                f"second), got {self.reconnect_rate!r}")

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        """Settings from explicit values (None = not given), then `env`, then defaults."""
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        unknown = set(explicit) - set(known)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, f in known.items():
            if explicit.get(name) is not None:
                values[name] = explicit[name]
                continue
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            try:
                values[name] = f.metadata["convert"](raw)
            except ValueError as exc:
                raise SettingsError(f"{f.metadata['env']}={raw!r}: {exc}") from exc
        if isinstance(values.get("home"), str):
            values["home"] = Path(values["home"])
        return cls(**values)

    # -- derived paths (the FLEETLOOP_HOME layout) ------------------------------------------
    @property
    def gateway_dir(self) -> Path:
        return self.home / "gateways" / self.gateway_id

    @property
    def broker_dir(self) -> Path:
        return self.gateway_dir / "broker"

    @property
    def db_path(self) -> Path:
        return self.gateway_dir / "gateway.db"

    @property
    def run_file(self) -> Path:
        return self.gateway_dir / "run.json"

    @property
    def token_path(self) -> Path:
        return self.token_file if self.token_file is not None else self.gateway_dir / "token"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}/status"


def describe() -> list[tuple[str, str, str]]:
    """(field, environment variable, help) for every setting, for docs and --help."""
    return [(f.name, f.metadata["env"], f.metadata["help"]) for f in fields(Settings)]
