"""`fleetloop cloud ...`: the cloud's commands, thin over cloud.main (mounted by fleetloop.cli)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cloud.errors import CloudError
from cloud.services.watch import SHUTDOWN_GRACE_S
from cloud.settings import ENV_DB, ENV_DEV, Settings
from protocol.home import ENV_HOME

if TYPE_CHECKING:
    from fastapi import FastAPI

# uvicorn's compiled HTTP parser and uvloop's event loop (declared dependencies): the pure-Python
# parser's reading of each batch's body cost about a tenth of the ingest (docs/benchmarks.md)
HTTP = "httptools"
LOOP = "uvloop"

app = typer.Typer(
    help="The fleetloop cloud: ingest API, device config, dashboard.\n\n"
    "Example: fleetloop cloud serve --dev --port 8000",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """The fleetloop cloud: ingest API, device config, dashboard.

    Example: fleetloop cloud serve --dev --port 8000
    """


@app.command()
def serve(
    home: Annotated[
        Path | None,
        typer.Option(
            help=f"fleetloop home (database in <home>/cloud/, config key in <home>/keys/); "
            f"default: ${ENV_HOME} or ./.fleetloop",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (see the log line)")] = 8000,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help=f"dev mode: the default bootstrap admin token, an open dashboard "
            f"(or ${ENV_DEV}=1)",
        ),
    ] = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help=f"SQLite file, or a postgresql://user@host/db URL; default ${ENV_DB} or "
            "<home>/cloud/cloud.db",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="uvicorn worker processes (more than 1: PostgreSQL only)"),
    ] = 1,
) -> None:
    """Serve the API and the dashboard with uvicorn until interrupted.

    Settings from the environment: FLEETLOOP_ADMIN_TOKEN (the bootstrap admin, optional:
    `fleetloop token create --home ...` makes admin tokens in the database),
    FLEETLOOP_CONFIG_KEY (default <home>/keys/config.key.pem), FLEETLOOP_CLOUD_DB
    (default <home>/cloud/cloud.db).

    Example: fleetloop cloud serve --home .fleetloop --port 8000 --dev

    Example: fleetloop cloud serve --db postgresql://fleet@db.local/fleet --workers 4
    """
    import uvicorn

    from cloud.db import open_database
    from cloud.main import create_app

    try:
        settings = Settings.load(home=home, dev=True if dev else None, db_path=db)
        if workers > 1 and settings.db_url is None:
            raise CloudError(
                "--workers above 1 needs PostgreSQL (--db postgresql://...): on SQLite every "
                "write goes through one file lock, so more processes add contention, not speed"
            )
        application = create_app(settings)  # checks the settings; no I/O yet
        if workers > 1:
            # Migrate once here, and fail here with a clear message, before any worker starts.
            database = open_database(settings.database)
            database.open()
            database.close()
    except CloudError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if workers > 1:
        # Each worker process builds its own app (and pool) from the environment.
        os.environ[ENV_HOME] = str(settings.home)
        os.environ[ENV_DB] = str(settings.database)
        if settings.dev:
            os.environ[ENV_DEV] = "1"
        uvicorn.run("cloud.cli:worker_app", factory=True, host=host, port=port,
                    workers=workers, log_level="info", timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                    http=HTTP, loop=LOOP)
        return
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="info",
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                                           http=HTTP, loop=LOOP))
    server.run()


def worker_app() -> FastAPI:
    """The app of one worker of `serve --workers N`: the settings come from the environment
    that `serve` set before starting the workers."""
    from cloud.main import create_app

    return create_app(Settings.load())


if __name__ == "__main__":
    app()
