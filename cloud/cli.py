"""`fleetloop cloud ...`: the cloud's commands, thin over cloud.main (mounted by fleetloop.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloud.errors import CloudError
from cloud.settings import ENV_DEV, Settings
from protocol.home import ENV_HOME

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
) -> None:
    """Serve the API and the dashboard with uvicorn until interrupted.

    Settings from the environment: FLEETLOOP_ADMIN_TOKEN (the bootstrap admin, optional:
    `fleetloop token create --home ...` makes admin tokens in the database),
    FLEETLOOP_CONFIG_KEY (default <home>/keys/config.key.pem), FLEETLOOP_CLOUD_DB
    (default <home>/cloud/cloud.db).

    Example: fleetloop cloud serve --home .fleetloop --port 8000 --dev
    """
    import uvicorn

    from cloud.main import create_app

    try:
        settings = Settings.load(home=home, dev=True if dev else None)
        application = create_app(settings)
    except CloudError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="info"))
    server.run()


if __name__ == "__main__":
    app()
