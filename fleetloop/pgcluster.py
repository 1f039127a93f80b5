"""A throwaway PostgreSQL cluster for the tests and the benchmark: `initdb` + `pg_ctl` in a
temporary directory, on a free port (never 5432), listening on 127.0.0.1 only, trust
authentication, fsync off (nothing in it outlives the run), stopped and deleted at the end.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the `postgres`
user (Debian's `postgresql` package creates it) and the directory is made its own. The binaries
come from `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetloop.procs import free_port

ENV_REQUIRE = "FLEETLOOP_REQUIRE_POSTGRES"
SERVICE_USER = "postgres"


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no user to run them as."""


def bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres. Raises ClusterUnavailable."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))

    def version(p: Path) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in p.parent.name.split("."))
        except ValueError:
            return (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise ClusterUnavailable(
        "PostgreSQL server binaries not found (initdb, pg_ctl): install Debian's postgresql "
        "package (`make setup` does when initdb is missing)"
    )


def _as_user() -> list[str]:
    """The prefix that runs a command as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ClusterUnavailable(
            f"running as root and there is no {SERVICE_USER!r} user to run PostgreSQL as"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", SERVICE_USER, "--"]
    return ["su", SERVICE_USER, "-s", "/bin/sh", "-c"]  # pragma: no cover - runuser is in util-linux


@dataclass
class Cluster:
    """One running throwaway cluster; `url(db)` names a database in it."""

    directory: Path
    port: int
    bindir: Path
    _prefix: list[str]

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: Sequence[str], timeout: float = 120) -> None:
        cmd = list(argv)
        if self._prefix and self._prefix[0] == "su":
            cmd = [*self._prefix, " ".join(_quote(a) for a in cmd)]
        else:
            cmd = [*self._prefix, *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                             cwd=self.directory)
        if out.returncode != 0:
            log = self.directory / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ClusterUnavailable(
                f"{Path(argv[0]).name} failed ({out.returncode}): {out.stderr.strip()}\n{tail}"
            )

    def start(self) -> Cluster:
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", SERVICE_USER,
                   "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync"])
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=64MB"
        )
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                   "-l", str(self.directory / "server.log"), "-w", "-t", "60", "start"])
        return self

    def stop(self) -> None:
        try:
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                       "-w", "stop"], timeout=60)
        except (ClusterUnavailable, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def start_cluster() -> Cluster:
    """Start a cluster in a new temporary directory. Raises ClusterUnavailable."""
    binaries = bindir()
    prefix = _as_user()
    # Not under pytest's tmp_path: its parents are 0700 root, which the postgres user cannot
    # traverse. mkdtemp makes it 0700; it is then handed to the user the server runs as.
    directory = Path(tempfile.mkdtemp(prefix="fleetloop-pg-"))
    if prefix:
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    port = free_port()
    while port == 5432:  # pragma: no cover - never the machine's own PostgreSQL
        port = free_port()
    cluster = Cluster(directory=directory, port=port, bindir=binaries, _prefix=prefix)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


def required() -> bool:
    """True when `make test` demands PostgreSQL: unavailable is then a failure, not a skip."""
    return os.environ.get(ENV_REQUIRE, "").strip().lower() in ("1", "true", "yes", "on")
