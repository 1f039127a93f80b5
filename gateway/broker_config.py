"""The Mosquitto config and ACL the gateway writes at every start.

Each choice closes a way Mosquitto's defaults lose or leak data (see shared NOTES): mTLS with
the certificate CN as username and client id, a per-device ACL, unlimited queue length bounded
by bytes, a raised in-flight window (the gateway acks only after its commit), persistence saved
every second, `user <us>` so a root run can still read the 0600 keys.
"""

from __future__ import annotations

import getpass
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway import tech_identity
from gateway.errors import BrokerError
from gateway.keys import GatewayKeys
from protocol import hint

STANDARD_BINARY = Path("/usr/sbin/mosquitto")


@dataclass(frozen=True)
class BrokerConfig:
    directory: Path  # <home>/gateways/<gw>/broker
    bind: str
    port: int
    keys: GatewayKeys
    gateway_id: str
    user: str
    max_inflight: int = 1000
    max_queued_bytes: int = 256 * 1024 * 1024
    autosave_s: int = 1
    observers: tuple[str, ...] = ()  # read-only identities (Settings.observers)

    @property
    def conf_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def acl_path(self) -> Path:
        return self.directory / "acl"

    @property
    def pid_path(self) -> Path:
        return self.directory / "mosquitto.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def crl_path(self) -> Path:
        """The device CA's CRL (PEM) the gateway pulled from the cloud (gateway.revocation)."""
        return self.directory / "crl.pem"


def render_acl(gateway_id: str, observers: tuple[str, ...] = ()) -> str:
    watch = [line for name in observers for line in (f"user {name}", "topic read fleet/#")]
    return "\n".join([
        "# Written by the fleetloop gateway at every start; edits are overwritten.",
        "# username = certificate CN = client id (use_identity_as_username, use_username_as_clientid)",
        "",
        "# The gateway reads every device's uplink and writes acks and configs.",
        f"user {gateway_id}",
        "topic readwrite fleet/#",
        "",
        "# Observers (--observer): read every device's topics, write none.",
        *watch,
        "",
        "# The technician's local identity (gateway ping, gateway.tech_identity): write pings,",
        "# read pongs, nothing else. Its CN starts with _, which no device id may.",
        f"user {tech_identity.CN}",
        "topic write fleet/+/ping",
        "topic read fleet/+/pong",
        "",
        "# Every device: write only its own uplink topics, read only its own downlink topics.",
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
        "",
        "# Every client may read the gateway's back-pressure hint (retained); only the gateway",
        "# writes it (its fleet/# above). A pattern without %u applies to every user.",
        f"pattern read {hint.TOPIC}",
        "",
    ])


def render_config(cfg: BrokerConfig, crl: bool = False) -> str:
    """The config; `crl`: refuse the certificates on the CRL at cfg.crl_path (Mosquitto reads
    it at start only: a new CRL needs a restart, gateway.broker.Broker.restart)."""
    keys = cfg.keys
    revoked = ["# Certificates the device CA revoked (fleetloop fw crl, pulled from the cloud).",
               f"crlfile {cfg.crl_path}"] if crl else []
    return "\n".join([
        "# Written by the fleetloop gateway at every start; edits are overwritten.",
        "per_listener_settings false",
        f"user {cfg.user}",
        f"pid_file {cfg.pid_path}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "log_timestamp true",
        "",
        "# Durable sessions: the queue survives a broker restart (the device keeps its records",
        "# until the gateway's own ack anyway).",
        "persistence true",
        f"persistence_location {cfg.data_dir}/",
        f"autosave_interval {cfg.autosave_s}",
        "autosave_on_changes false",
        "",
        "# Never drop queued QoS 1 messages by count (default 1000); bound the memory by bytes.",
        "max_queued_messages 0",
        f"max_queued_bytes {cfg.max_queued_bytes}",
        "# The gateway PUBACKs only after its commit: let a commit group be in flight at once.",
        f"max_inflight_messages {cfg.max_inflight}",
        "max_packet_size 65536",
        "persistent_client_expiration 30d",
        "",
        "# Only clients with a certificate from the device CA; CN = username = client id.",
        "allow_anonymous false",
        f"acl_file {cfg.acl_path}",
        f"listener {cfg.port} {cfg.bind}",
        "protocol mqtt",
        f"cafile {keys.ca_cert}",
        f"certfile {keys.broker_cert}",
        f"keyfile {keys.broker_key}",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        *revoked,
        "",
    ])


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except (OSError, UnicodeDecodeError):
        return False


def write_config(cfg: BrokerConfig) -> None:
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(cfg.directory, 0o700)  # its log and persistence hold device data
    for path, text in ((cfg.acl_path, render_acl(cfg.gateway_id, cfg.observers)), (cfg.conf_path, render_config(cfg, cfg.crl_path.is_file()))):
        if _holds(path, text):
            continue  # unchanged: no write, so a gateway on a full disk still starts its broker
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)


def find_mosquitto(explicit: str | None = None) -> str:
    """Path of the mosquitto binary: explicit setting, /usr/sbin/mosquitto, then PATH."""
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise BrokerError(f"mosquitto binary {explicit!r} not found or not executable")
        return found
    if os.access(STANDARD_BINARY, os.X_OK):
        return str(STANDARD_BINARY)
    found = shutil.which("mosquitto")
    if found is None:
        raise BrokerError(
            "mosquitto is not installed (looked in /usr/sbin and PATH): "
            "run `make setup` or `apt-get install mosquitto`"
        )
    return found


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def connect_host(bind: str) -> str:
    """Where a local client reaches a listener bound to `bind`."""
    return "127.0.0.1" if bind in ("0.0.0.0", "", "::") else bind
