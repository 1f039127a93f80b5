"""`fleetloop gateway ...`: thin commands over the gateway library. Errors become one clean line
on stderr and exit code 1; no tracebacks for users."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from gateway import app as gateway_app
from gateway import diag as diag_mod
from gateway.errors import GatewayError
from gateway.settings import Settings
from protocol.hint import MAX_HINT_MS

app = typer.Typer(
    no_args_is_help=True, add_completion=False,
    help="The edge gateway (Mosquitto, ingest, signed batches to the cloud, configs to devices) "
         "and its diagnostics.\n\nExample: fleetloop gateway diag --home .fleetloop --id gw-1",
)

HomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="fleetloop home (env FLEETLOOP_HOME, default ./.fleetloop).",
    show_default=False)]
IdOpt = Annotated[str | None, typer.Option(
    "--id", help="Gateway id (env FLEETLOOP_GATEWAY_ID, default gw-1).", show_default=False)]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@app.command()
def run(
    home: HomeOpt = None,
    gateway_id: IdOpt = None,
    mqtt_port: Annotated[int | None, typer.Option(
        help="Broker TLS port (default 8883).", show_default=False)] = None,
    status_port: Annotated[int | None, typer.Option(
        help="Local status endpoint port on 127.0.0.1 (default 8884).", show_default=False)] = None,
    cloud: Annotated[str | None, typer.Option(
        help="Cloud base URL (default http://127.0.0.1:8000).", show_default=False)] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="File with the gateway's cloud token (default <home>/gateways/<id>/token).",
        show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Records per signed batch (default 1000).", show_default=False)] = None,
    batch_interval: Annotated[float | None, typer.Option(
        help="Seconds before a partial batch is sealed (default 1.0).", show_default=False)] = None,
    min_reconnect_ms: Annotated[int | None, typer.Option(
        help=f"Fix the back-pressure hint: every device waits at least this many ms before "
             f"reconnecting (0..{MAX_HINT_MS}; default: computed from the known devices and "
             "--reconnect-rate).", show_default=False)] = None,
    reconnect_rate: Annotated[int | None, typer.Option(
        help="Device connections per second a restarted broker should take; the computed hint "
             "spreads the known devices over that (default 100).", show_default=False)] = None,
    observer: Annotated[list[str] | None, typer.Option(
        help="A certificate CN the broker lets read every device's topics and write none (a "
             "site's monitoring, a technician's tap); repeat for more.",
        show_default=False)] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run the gateway: its Mosquitto (mTLS, per-device ACL), durable ingest, signed batches to
    the cloud, configs down to devices, and a status endpoint. Stops cleanly on Ctrl-C/SIGTERM.

    Example: fleetloop gateway run --home .fleetloop --id gw-1 --cloud http://127.0.0.1:8000
    """
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise _fail(ValueError(f"unknown log level {log_level!r} (use DEBUG, INFO, WARNING, ERROR)"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        settings = Settings.build(
            home=home, gateway_id=gateway_id, mqtt_port=mqtt_port, status_port=status_port,
            cloud_url=cloud, token_file=token_file, batch_max_records=batch_size,
            batch_interval_s=batch_interval, min_reconnect_ms=min_reconnect_ms,
            reconnect_rate=reconnect_rate, observers=tuple(observer) if observer else None,
        )
        gateway_app.run(settings)
    except GatewayError as exc:
        raise _fail(exc) from None


@app.command()
def register(
    home: HomeOpt = None,
    gateway_id: IdOpt = None,
    cloud: Annotated[str | None, typer.Option(
        help="Cloud base URL (default http://127.0.0.1:8000).", show_default=False)] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="Where to keep the token (default <home>/gateways/<id>/token).",
        show_default=False)] = None,
    admin_token: Annotated[str, typer.Option(
        envvar="FLEETLOOP_ADMIN_TOKEN", help="The cloud's admin token (env FLEETLOOP_ADMIN_TOKEN).",
        show_default=False)] = "",
) -> None:
    """Register this gateway's batch-signing key with the cloud and keep the token it returns
    (mode 0600). Registering again issues a new token and retires the old one.

    Example: FLEETLOOP_ADMIN_TOKEN=... fleetloop gateway register --cloud http://127.0.0.1:8000
    """
    from gateway import enroll

    if not admin_token:
        raise _fail(ValueError("an admin token is needed: set FLEETLOOP_ADMIN_TOKEN or --admin-token"))
    try:
        settings = Settings.build(home=home, gateway_id=gateway_id, cloud_url=cloud,
                                  token_file=token_file)
        path = enroll.register(settings, admin_token)
    except GatewayError as exc:
        raise _fail(exc) from None
    typer.echo(f"registered {settings.gateway_id} with {settings.cloud_url}; token in {path}")


@app.command()
def diag(
    home: HomeOpt = None,
    gateway_id: IdOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every second until Ctrl-C.")] = False,
    url: Annotated[str | None, typer.Option(
        help="Status URL (default: read from <home>/gateways/<id>/run.json).",
        show_default=False)] = None,
) -> None:
    """Show a running gateway's health: broker, connected devices, ingest counts and refusals,
    what waits in the inbox and spool, the last uplink error, the back-pressure hint in effect,
    and per device the vitals of its latest state (consent tier, heap, uptime, buffer,
    reconnects, last reason).

    Example: fleetloop gateway diag --home .fleetloop --id gw-1 --watch
    """
    console = Console()
    try:
        if url is None:
            settings = Settings.build(home=home, gateway_id=gateway_id)
            url = diag_mod.status_url(settings.home, settings.gateway_id)
        if not watch:
            status = diag_mod.fetch(url)
            if as_json:
                typer.echo(json.dumps(status, indent=2, sort_keys=True))
            else:
                console.print(diag_mod.render(status))
            return
        with Live(console=console, auto_refresh=False) as live:
            while True:
                status = diag_mod.fetch(url)
                if as_json:
                    live.update(json.dumps(status, indent=2, sort_keys=True), refresh=True)
                else:
                    live.update(diag_mod.render(status), refresh=True)
                time.sleep(1.0)
    except GatewayError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        return
