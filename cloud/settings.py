"""Every setting of the cloud service and its default, in one frozen object.

Precedence: explicit arguments (CLI options) > environment > defaults.

    FLEETLOOP_HOME          home directory                (default ./.fleetloop)
    FLEETLOOP_CLOUD_DB      SQLite database path, or a postgresql:// URL
                                                          (default <home>/cloud/cloud.db)
    FLEETLOOP_ADMIN_TOKEN   bootstrap admin bearer token  (default: none; "dev-admin-token"
                                                           in dev mode)
    FLEETLOOP_DEV           1/true/yes/on: dev mode       (default off)
    FLEETLOOP_CONFIG_KEY    Ed25519 config-signing key    (default <home>/keys/config.key.pem)
    FLEETLOOP_RELEASE_PUB   the release key's public half, raw 32 bytes as `fleetloop fw
                            keygen` writes it: uploaded bundles are verified with it (the
                            cloud never holds the private half)
                                                          (default <home>/keys/release.pub)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cloud.errors import SettingsError
from protocol.home import resolve_home

ENV_DB = "FLEETLOOP_CLOUD_DB"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
ENV_ADMIN_TOKEN = "FLEETLOOP_ADMIN_TOKEN"
ENV_DEV = "FLEETLOOP_DEV"
ENV_CONFIG_KEY = "FLEETLOOP_CONFIG_KEY"
ENV_RELEASE_PUB = "FLEETLOOP_RELEASE_PUB"
ENV_TICK_S = "FLEETLOOP_CLOUD_TICK_S"

DEFAULT_ADMIN_TOKEN = "dev-admin-token"
MIN_ADMIN_TOKEN_LEN = 16
DASHBOARD_REFRESH_S = 5
TICK_S = 1.0  # how often the server moves rollouts and judges experiments (cloud.ticker)

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    home: Path
    db_path: Path
    admin_token: str | None  # the bootstrap admin; None: only the database's tokens
    dev: bool
    config_key_path: Path
    dashboard_refresh_s: int = DASHBOARD_REFRESH_S
    db_url: str | None = None  # a postgresql:// URL: PostgreSQL instead of the SQLite file
    release_pub_path: Path | None = None  # None: <home>/keys/release.pub
    tick_s: float = TICK_S  # 0: the server does nothing by itself (tests that drive the clock)

    @property
    def release_pub(self) -> Path:
        """Where the release public key is read (cloud.services.bundles)."""
        if self.release_pub_path is not None:
            return self.release_pub_path
        return self.home / "keys" / "release.pub"

    @property
    def database(self) -> str | Path:
        """What cloud.db.open_database opens: the PostgreSQL URL, else the SQLite path."""
        return self.db_url if self.db_url is not None else self.db_path

    @classmethod
    def load(
        cls,
        *,
        home: Path | str | None = None,
        dev: bool | None = None,
        admin_token: str | None = None,
        db_path: Path | str | None = None,
        config_key_path: Path | str | None = None,
        release_pub_path: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from arguments, then `env` (default os.environ), then defaults."""
        env = os.environ if env is None else env
        home_path = resolve_home(home, env)
        if dev is None:
            dev = env.get(ENV_DEV, "").strip().lower() in _TRUE
        db = db_path if db_path is not None else env.get(ENV_DB)
        url = db if isinstance(db, str) and db.startswith(POSTGRES_SCHEMES) else None
        if url is not None:
            db = None
        key = config_key_path if config_key_path is not None else env.get(ENV_CONFIG_KEY)
        token = admin_token if admin_token is not None else env.get(ENV_ADMIN_TOKEN)
        release = release_pub_path if release_pub_path is not None else env.get(ENV_RELEASE_PUB)
        tick = env.get(ENV_TICK_S, "").strip()
        return cls(
            home=home_path,
            db_path=Path(db).expanduser() if db else home_path / "cloud" / "cloud.db",
            admin_token=(DEFAULT_ADMIN_TOKEN if dev else None) if token is None else token,
            dev=dev,
            config_key_path=(
                Path(key).expanduser() if key else home_path / "keys" / "config.key.pem"
            ),
            db_url=url,
            release_pub_path=Path(release).expanduser() if release else None,
            tick_s=_seconds(ENV_TICK_S, tick) if tick else TICK_S,
        )

    def check(self) -> None:
        """Refuse settings a production service must not run with. Raises SettingsError.

        No bootstrap admin token is fine: the database's tokens (`fleetloop token create
        --home ...` makes the first admin token offline) are then the only ones. A token that
        is set must be strong outside dev mode, and never the built-in default there."""
        if self.admin_token is None:
            return
        if not self.admin_token or self.admin_token != self.admin_token.strip():
            raise SettingsError("the admin token is empty or has surrounding spaces")
        if self.dev:
            return
        if self.admin_token == DEFAULT_ADMIN_TOKEN:
            raise SettingsError(
                f"refusing the default admin token outside dev mode: unset {ENV_ADMIN_TOKEN} "
                f"(and make tokens with `fleetloop token create`), set a strong one, or run "
                f"with --dev ({ENV_DEV}=1)"
            )
        if len(self.admin_token) < MIN_ADMIN_TOKEN_LEN:
            raise SettingsError(
                f"the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters outside dev mode"
            )


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {text!r}") from None
    if not 0 <= value <= 3600:
        raise SettingsError(f"{name} must be between 0 and 3600 seconds, not {text!r}")
    return value
