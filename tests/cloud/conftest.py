"""Fixtures of the cloud tests: an app on a fresh database, a config key, a registered gateway.

Every test that takes `settings` (and so `app`, `client`, `gateway`) runs twice: on an SQLite
file under tmp_path and on a fresh PostgreSQL database of the session's throwaway cluster
(tests/conftest.py); `backend` tells which.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, which puts no test directory on sys.path; the
# test modules here share helpers through `cloudkit` (a unique name in the whole tree).
sys.path.insert(0, str(Path(__file__).parent))

from cloudkit import ADMIN_TOKEN, Clock, GatewaySim, pem_private, register  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cloud.main import create_app  # noqa: E402
from cloud.settings import Settings  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def config_key(home: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path = home / "keys" / "config.key.pem"
    path.parent.mkdir(parents=True)
    path.write_bytes(pem_private(key))
    path.chmod(0o600)
    return key


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_target(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The database the settings name: None (the SQLite file in home), or a PostgreSQL URL."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return None


@pytest.fixture
def settings(home: Path, config_key: Ed25519PrivateKey, db_target: str | None) -> Settings:
    return Settings.load(home=home, admin_token=ADMIN_TOKEN, dev=False, env={}, db_path=db_target)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(settings: Settings, clock: Clock) -> Iterator[FastAPI]:
    application = create_app(settings, clock=clock)
    try:
        yield application
    finally:
        application.state.db.close()  # a test may use the store after the client stopped


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def gateway(client: TestClient) -> GatewaySim:
    key = Ed25519PrivateKey.generate()
    return GatewaySim(client, "gw-1", key, register(client, "gw-1", key))
