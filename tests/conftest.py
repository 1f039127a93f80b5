"""Shared fixtures: a whole fleetloop stack of real processes under the test's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetloop.pgcluster import ENV_REQUIRE, Cluster, ClusterUnavailable, required, start_cluster
from fleetloop.stack import Stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """Keys made, nothing started: each test starts what it needs through the CLI."""
    home = tmp_path / "home"
    st = Stack(home=home, admin_token="test-admin-token-" + tmp_path.name)
    try:
        yield st
    finally:
        st.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print("\n===== logs of the processes this test started =====")
            print(st.supervisor.logs())


# PostgreSQL -----------------------------------------------------------------------------------
# One throwaway cluster per session (fleetloop.pgcluster), a migrated template database in it,
# and a fresh database per test copied from the template (CREATE DATABASE ... TEMPLATE: a few
# milliseconds, no migration per test). `make test` sets FLEETLOOP_REQUIRE_POSTGRES=1: a cluster
# that cannot start is then a failure, never a skip.

_TEMPLATE = "fleetloop_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    try:
        cluster = start_cluster()
    except ClusterUnavailable as exc:
        if required():
            pytest.fail(f"PostgreSQL is required ({ENV_REQUIRE}=1) but unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


class PgDatabases:
    """Creates and drops databases in the session's cluster."""

    def __init__(self, cluster: Cluster) -> None:
        import psycopg

        self.cluster = cluster
        self._admin = psycopg.connect(cluster.url(), autocommit=True)
        self._count = 0
        self._template_ready = False

    def create(self, *, migrated: bool = True) -> str:
        """A new database's URL: migrated to the current schema (from the template), or empty."""
        if migrated and not self._template_ready:
            self._admin.execute(f"CREATE DATABASE {_TEMPLATE}")
            from cloud.pg import PgDatabase

            db = PgDatabase(self.cluster.url(_TEMPLATE))
            db.open()
            db.close()
            self._template_ready = True
        self._count += 1
        name = f"t{self._count}"
        template = _TEMPLATE if migrated else "template0"
        # FILE_COPY (PostgreSQL >= 15) copies a small template three times faster than the
        # default WAL_LOG; older servers know only the plain form.
        strategy = " STRATEGY FILE_COPY" if self._admin.info.server_version >= 150000 else ""
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}{strategy}")
        return self.cluster.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        self._admin.close()


@pytest.fixture(scope="session")
def pg_databases(pg_cluster: Cluster) -> Iterator[PgDatabases]:
    databases = PgDatabases(pg_cluster)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> Iterator[str]:
    """A fresh database, migrated to the current schema, dropped after the test."""
    url = pg_databases.create()
    try:
        yield url
    finally:
        pg_databases.drop(url)
