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

from gateway import aggregate_policy
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
    # The spool's budget and the disk (gateway.spool_budget, gateway.disk)
    spool_max_bytes: int = _setting(512 * 1024 * 1024, "FLEETLOOP_SPOOL_MAX_BYTES", int,
                                    "bytes of sealed batches kept for an unreachable cloud; "
                                    "over it the oldest batches are dropped whole and reported "
                                    "to the cloud as a gap")
    spool_max_age_s: float = _setting(14 * 86400.0, "FLEETLOOP_SPOOL_MAX_AGE_S", float,
                                      "oldest sealed batch kept for an unreachable cloud "
                                      "(seconds); older ones are dropped whole and reported")
    disk_min_free_bytes: int = _setting(32 * 1024 * 1024, "FLEETLOOP_DISK_MIN_FREE_BYTES", int,
                                        "free space the gateway leaves on its disk: below it "
                                        "ingest stops acknowledging (devices keep their "
                                        "records) until space returns")
    quarantine_max_rows: int = _setting(10_000, "FLEETLOOP_QUARANTINE_MAX_ROWS", int,
                                        "refused device messages kept for diagnostics")
    quarantine_device_rows: int = _setting(50, "FLEETLOOP_QUARANTINE_DEVICE_ROWS", int,
                                           "refused messages kept per device")
    quarantine_rate: float = _setting(2.0, "FLEETLOOP_QUARANTINE_RATE", float,
                                      "refused messages of one device written per second "
                                      "(the rest are counted only)")
    probe_s: float = _setting(1.0, "FLEETLOOP_PROBE_S", float,
                              "while uploads back off after an outage, ask the cloud's health "
                              "this often, and send as soon as it answers")
    long_poll_s: float = _setting(25.0, "FLEETLOOP_LONG_POLL_S", float,
                                  "how long the cloud may hold a config, revocation or update "
                                  "offer request open until something changes (0: poll at "
                                  "fixed intervals)")
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
    # Updates (gateway.updates, gateway.ota_cache, gateway.ota_serve)
    release_pub: Path | None = _setting(None, "FLEETLOOP_RELEASE_PUB", _path,
                                        "the release public key (raw 32 bytes) bundles are "
                                        "verified with (default <home>/keys/release.pub)")
    ota_poll_s: float = _setting(5.0, "FLEETLOOP_OTA_POLL_S", float,
                                 "how often to ask the cloud for update offers when it holds "
                                 "no long-poll for them (an older cloud, or the long-poll "
                                 "failing)")
    ota_safety_s: float = _setting(60.0, "FLEETLOOP_OTA_SAFETY_S", float,
                                   "while the cloud's long-poll tells the gateway of changed "
                                   "offers at once, ask for the offers anyway this often")
    ota_cache_bytes: int = _setting(64 * 1024 * 1024, "FLEETLOOP_OTA_CACHE_BYTES", int,
                                    "disk the update cache may use for verified bundles")
    ota_concurrent: int = _setting(16, "FLEETLOOP_OTA_CONCURRENT", int,
                                   "devices that may download an update at once; more are "
                                   "told to come back later")
    ota_fetch_rate: float = _setting(40.0, "FLEETLOOP_OTA_FETCH_RATE", float,
                                     "update fetches per second one device may make; more "
                                     "are dropped")
    ota_retry_min_s: float = _setting(30.0, "FLEETLOOP_OTA_RETRY_MIN_S", float,
                                      "first wait before a refused or failed bundle download "
                                      "is tried again")
    ota_retry_max_s: float = _setting(1800.0, "FLEETLOOP_OTA_RETRY_MAX_S", float,
                                      "longest wait between tries of a refused bundle")

    # Aggregation per product (gateway.aggregate_policy, gateway.aggregate)
    aggregate: str | None = _setting(None, "FLEETLOOP_AGGREGATE", str,
                                     "per product: raw, N (windows of N s next to the raw "
                                     "records) or N:local (windows only; raw records stay at "
                                     "the gateway), e.g. bike=60,mirror=300:local,engine=raw; "
                                     "unlisted products: raw. Overrides the cloud's policy; "
                                     "not set: follow the cloud's")
    aggregate_poll_s: float = _setting(30.0, "FLEETLOOP_AGGREGATE_POLL_S", float,
                                       "how often to ask the cloud for its aggregation policy")
    aggregate_grace_s: float = _setting(10.0, "FLEETLOOP_AGGREGATE_GRACE_S", float,
                                        "a window closes this long after its length has passed "
                                        "since it opened, even if its device sends nothing newer")
    aggregate_local_days: float = _setting(30.0, "FLEETLOOP_AGGREGATE_LOCAL_DAYS", float,
                                           "days raw records of N:local products are kept at "
                                           "the gateway")

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
                    "broker_max_queued_bytes", "hint_interval_s", "revocation_poll_s",
                    "ota_poll_s", "ota_safety_s", "ota_fetch_rate", "ota_retry_min_s",
                    "ota_cache_bytes",
                    "spool_max_bytes", "spool_max_age_s", "quarantine_max_rows",
                    "quarantine_device_rows", "quarantine_rate", "probe_s", "aggregate_poll_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be > 0")
        if self.disk_min_free_bytes < 0:
            raise SettingsError("disk_min_free_bytes must be >= 0")
        if not 0 <= self.long_poll_s <= 60:
            raise SettingsError("long_poll_s must be 0..60 (the cloud holds at most 60 s)")
        if self.retry_max_s < self.retry_min_s:
            raise SettingsError("retry_max_s must be >= retry_min_s")
        if self.ota_retry_max_s < self.ota_retry_min_s:
            raise SettingsError("ota_retry_max_s must be >= ota_retry_min_s")
        if type(self.ota_concurrent) is not int or not 1 <= self.ota_concurrent <= 100_000:
            raise SettingsError(f"ota_concurrent must be an int in 1..100000, got "
                                f"{self.ota_concurrent!r}")
        for name in self.observers:
            if not valid_device_id(name) or name == self.gateway_id:
                raise SettingsError(f"invalid observer {name!r}: a certificate CN of 1-64 of "
                                    "[A-Za-z0-9_-], not the gateway's own")
        if self.aggregate is not None:
            aggregate_policy.parse(self.aggregate)  # SettingsError says what is wrong
        if self.aggregate_grace_s < 0 or self.aggregate_local_days <= 0:
            raise SettingsError("aggregate_grace_s must be >= 0 and aggregate_local_days > 0")
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
    def updates_dir(self) -> Path:
        """The update cache: verified bundles (gateway.ota_cache)."""
        return self.gateway_dir / "updates"

    @property
    def release_pub_path(self) -> Path:
        return self.release_pub if self.release_pub is not None else self.home / "keys" / "release.pub"

    @property
    def aggregate_policy(self) -> aggregate_policy.Policy | None:
        """The gateway's own policy; None: follow the cloud's."""
        return None if self.aggregate is None else aggregate_policy.parse(self.aggregate)

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}/status"


def describe() -> list[tuple[str, str, str]]:
    """(field, environment variable, help) for every setting, for docs and --help."""
    return [(f.name, f.metadata["env"], f.metadata["help"]) for f in fields(Settings)]
