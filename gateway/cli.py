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
from gateway import diag_problems, support_bundle
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
    spool_max_bytes: Annotated[int | None, typer.Option(
        help="Bytes of sealed batches kept while the cloud is unreachable; over it the oldest "
             "are dropped whole and reported to the cloud as a gap (default 512 MiB).",
        show_default=False)] = None,
    spool_max_age: Annotated[float | None, typer.Option(
        help="Seconds a sealed batch is kept while the cloud is unreachable (default 14 days).",
        show_default=False)] = None,
    disk_min_free: Annotated[int | None, typer.Option(
        help="Free bytes to leave on the disk: below it ingest stops acknowledging and devices "
             "keep their records until space returns (default 32 MiB).",
        show_default=False)] = None,
    aggregate: Annotated[str | None, typer.Option(
        help="Per product: raw, N (windows of N s sent next to the raw records) or N:local "
             "(windows only, raw records kept at the gateway), e.g. bike=60,mirror=300:local "
             "(default: every product raw).", show_default=False)] = None,
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
            spool_max_bytes=spool_max_bytes, spool_max_age_s=spool_max_age,
            disk_min_free_bytes=disk_min_free,
            aggregate=aggregate,
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


def _usage(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(diag_mod.EXIT_CANNOT_READ)


@app.command()
def diag(
    home: HomeOpt = None,
    gateway_id: IdOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status and the problems "
                                          "as JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every second until Ctrl-C.")] = False,
    url: Annotated[str | None, typer.Option(
        help="Status URL (default: read from <home>/gateways/<id>/run.json).",
        show_default=False)] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="Write a support bundle (.tar.gz or .zip) to this file: status, logs, config with "
             "every secret redacted, versions, table dumps.", show_default=False)] = None,
) -> None:
    """Show a gateway's problems first, each with what to check, then the detail: identity
    and version, broker, devices (online, last seen, firmware, buffer, drops, reconnects,
    heap, consent, link quality), spool, uplink, updates, certificates, disk and clock. When
    the gateway is not running, reads its files and says why it stopped and what to do.

    Exit codes: 0 no problems; 1 problems found; 2 bad usage or the status could not be read;
    3 the gateway is not running.

    Example: fleetloop gateway diag --home .fleetloop --id gw-1 --watch
    """
    try:
        settings = Settings.build(home=home, gateway_id=gateway_id)
        if bundle is not None:
            st = diag_mod.gather(settings, url)
            found = diag_problems.find(st, int(time.time() * 1000))
            support_bundle.write(bundle, settings, diag_mod.to_json(st, found))
            typer.echo(f"support bundle written to {bundle} ({len(found)} problem(s))")
            raise typer.Exit(diag_mod.exit_code(st, found))
        if not watch:
            raise typer.Exit(_diag_once(settings, url, as_json, Console()))
        raise typer.Exit(_diag_watch(settings, url, as_json))
    except GatewayError as exc:
        raise _usage(exc) from None


def _diag_once(settings: Settings, url: str | None, as_json: bool, console: Console) -> int:
    st = diag_mod.gather(settings, url)
    found = diag_problems.find(st, int(time.time() * 1000))
    if as_json:
        typer.echo(json.dumps(diag_mod.to_json(st, found), indent=2, sort_keys=True))
    else:
        console.print(diag_mod.render(st, found=found))
    return diag_mod.exit_code(st, found)


def _diag_watch(settings: Settings, url: str | None, as_json: bool) -> int:
    """Redraw every second until Ctrl-C; the clock against the cloud is measured once a
    minute (one request to the cloud, not one a second). Exits with the last code."""
    code, clock, clock_at = diag_mod.EXIT_OK, None, 0.0
    with Live(console=Console(), auto_refresh=False) as live:
        try:
            while True:
                if time.monotonic() - clock_at > 60:
                    clock, clock_at = None, time.monotonic()
                st = diag_mod.gather(settings, url, clock)
                clock = st.get("clock") or clock
                found = diag_problems.find(st, int(time.time() * 1000))
                code = diag_mod.exit_code(st, found)
                live.update(json.dumps(diag_mod.to_json(st, found), indent=2, sort_keys=True)
                            if as_json else diag_mod.render(st, found=found), refresh=True)
                time.sleep(1.0)
        except KeyboardInterrupt:
            return code


@app.command()
def ping(
    device: Annotated[str, typer.Argument(help="The device id (its certificate CN).")],
    home: HomeOpt = None,
    gateway_id: IdOpt = None,
    count: Annotated[int, typer.Option("--count", "-c", min=1, max=1000,
                                       help="Pings to send.")] = 1,
    timeout: Annotated[float, typer.Option(min=0.01, max=600.0,
                                           help="Seconds to wait for each answer.")] = 2.0,
    interval: Annotated[float, typer.Option(min=0.0, max=60.0,
                                            help="Seconds between pings.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the replies as JSON.")] = False,
) -> None:
    """An MQTT round trip to one device through this gateway's broker, with its time: a token
    on fleet/<id>/ping, echoed by the device on fleet/<id>/pong. Connects as the technician
    (its own certificate, CN _technician, allowed only these two topics), never as the gateway.

    Exit codes: 0 every ping answered; 1 some went unanswered; 2 bad usage or no technician
    identity; 3 the broker cannot be reached (is the gateway running?).

    Example: fleetloop gateway ping bike-1 --count 5 --timeout 2
    """
    from gateway import ping as ping_mod
    from gateway.broker_config import connect_host
    from gateway.status import RunInfo
    from gateway.tech_identity import TechIdentity

    try:
        settings = Settings.build(home=home, gateway_id=gateway_id)
        try:
            port = RunInfo.read(settings.run_file).mqtt_port
        except (OSError, ValueError, KeyError):
            port = settings.mqtt_port
        target = ping_mod.Target(connect_host(settings.mqtt_host), port,
                                 TechIdentity.under(settings.home, settings.gateway_id))
        replies = ping_mod.ping(target, device, count, timeout, interval)
    except ping_mod.BrokerUnreachable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(diag_mod.EXIT_DOWN) from None
    except GatewayError as exc:
        raise _usage(exc) from None
    answered = sum(r.rtt_ms is not None for r in replies)
    if as_json:
        typer.echo(json.dumps({"device": device, "sent": len(replies), "answered": answered,
                               "replies": [r.to_obj() for r in replies]}, indent=2))
    else:
        for r in replies:
            typer.echo(f"ping {r.seq}: " + (f"{r.rtt_ms:.1f} ms" if r.rtt_ms is not None
                                            else f"no answer within {timeout:g} s"))
        typer.echo(ping_mod.summary(device, replies, timeout), err=answered < len(replies))
    raise typer.Exit(0 if answered == len(replies) else 1)
