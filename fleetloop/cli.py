"""The one `fleetloop` command, composed from each part's own commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from fwtool.cli import app as fw_app

from cloud.cli import app as cloud_app
from cloud.token_cli import app as token_app
from fleetloop.config_cli import app as config_app
from fleetloop.fleet.cli import app as fleet_app
from fleetloop.loop_cli import app as loop_app
from fleetloop.policy_cli import app as policy_app
from fleetloop.rollout_cli import app as rollout_app
from gateway.cli import app as gateway_app
from protocol.home import DEFAULT_HOME as HOME_DIR
from protocol.home import ENV_HOME

app = typer.Typer(
    help="fleetloop: keep connected products useful after they are sold.\n\n"
    "Example: fleetloop demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
device_app = typer.Typer(
    help="Run a device agent on this host.\n\nExample: fleetloop device run --profile bike --id bike-1",
    no_args_is_help=True,
)

app.add_typer(cloud_app, name="cloud")
app.add_typer(token_app, name="token")
app.add_typer(gateway_app, name="gateway")
app.add_typer(fw_app, name="fw")
app.add_typer(device_app, name="device")
app.add_typer(config_app, name="config")
app.add_typer(rollout_app, name="rollout")
app.add_typer(policy_app, name="policy")
app.add_typer(fleet_app, name="fleet")
app.add_typer(loop_app, name="loop")


HomeOpt = Annotated[Path, typer.Option("--home", envvar=ENV_HOME, help="State directory.")]
DEFAULT_HOME = Path(HOME_DIR)


def _split_broker(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter("expected HOST:PORT, e.g. localhost:8883")
    return host, int(port)


@device_app.command("run")
def device_run(
    device_id: Annotated[str, typer.Option("--id", help="Device id (its certificate CN).")],
    profile: Annotated[str, typer.Option(help="Product profile: bike, mirror or engine.")],
    home: HomeOpt = DEFAULT_HOME,
    broker: Annotated[str, typer.Option(help="Gateway broker HOST:PORT.")] = "localhost:8883",
    interpreter: Annotated[str, typer.Option(help="micropython or cpython.")] = "micropython",
    records: Annotated[int | None, typer.Option(
        min=1, help="Stop sampling once the device's seq reaches N (a restart continues to N).")] = None,
    interval_ms: Annotated[int | None, typer.Option(
        "--interval-ms", min=100, max=3600000,
        help="Sampling period until a config from the cloud says otherwise.")] = None,
    heap: Annotated[str, typer.Option(help="MicroPython heap size.")] = "64K",
    heartbeat_s: Annotated[int | None, typer.Option(
        "--heartbeat-s", min=5, max=86400,
        help="Seconds between state messages until a config from the cloud says otherwise.")] = None,
) -> None:
    """Provision the device image (keeping its data, and its firmware once it has slots: what
    an update installed stays; `fleetloop fw provision` replaces it) and run the agent as a
    board would: it is
    restarted after any failure with a back-off (1 s doubling to 30 s), killed and restarted
    when it prints nothing for 30 s (the watchdog), and told why at its next start; a kill -9
    of this command is a power cut of the device.

    Example: fleetloop device run --profile bike --id bike-1 --broker localhost:8883
    """
    from fwtool.errors import FwToolError
    from fwtool.provision import provision

    from fleetloop.device_runner import INTERPRETERS, device_command, run_device

    if interpreter not in INTERPRETERS:
        raise typer.BadParameter(f"choose one of {', '.join(INTERPRETERS)}", param_hint="--interpreter")
    host, port = _split_broker(broker)
    try:
        image = provision(home, device_id, profile, host, port, keep_firmware=True)
    except (FwToolError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        argv, env, cwd = device_command(image, interpreter, records, heap, interval_ms,
                                        heartbeat_s)
        code = run_device(argv, env, cwd)
    except OSError as exc:  # no interpreter, image unreadable
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


@device_app.command("consent")
def device_consent_cmd(
    device_id: Annotated[str, typer.Option("--id", help="Device id (its certificate CN).")],
    tier: Annotated[str, typer.Option(help="Consent tier: essential, usage or personal.")],
    home: HomeOpt = DEFAULT_HOME,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Press the product's consent button: ask the device to move to TIER (widen or narrow).

    Writes data/consent.request into the device's image; the agent applies it within about a
    second while it runs, or at its next start, without any network, and logs a consent record.

    Example: fleetloop device consent --id bike-1 --tier usage
    """
    import json

    from fleetloop.device_consent import ConsentError, request
    from protocol.home import resolve_home

    try:
        path = request(resolve_home(home), device_id, tier)
    except ConsentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if json_out:
        typer.echo(json.dumps({"device": device_id, "tier": tier, "request": str(path)}))
    else:
        typer.echo(f"consent {tier} requested for {device_id} ({path}); the device applies it "
                   "within a second while it runs, else at its next start")


bench_app = typer.Typer(
    help="Measure fleetloop on this machine.\n\nExample: fleetloop bench path --devices 4 --records 10000",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

# The options every measuring command shares: where its result is kept.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ResultsOpt = Annotated[Path, typer.Option(help="Where the result is saved (under the command's name).")]
DocsOpt = Annotated[Path, typer.Option(help="Doc whose generated table (between the command's markers) is replaced.")]
WriteOpt = Annotated[bool, typer.Option(help="Save the result and regenerate the docs table.")]
RESULTS = Path("bench/results.json")
DOCS = Path("docs/benchmarks.md")


@bench_app.command("path")
def bench_path_cmd(
    devices: Annotated[int, typer.Option(min=1, max=64, help="Stand-in devices publishing at once.")] = 4,
    records: Annotated[int, typer.Option(min=1, max=60000, help="Records per device.")] = 10000,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """Records per second from MQTT publishers through broker, gateway and cloud, each counted,
    next to the publishers' own rate into the broker in the same run.

    Example: fleetloop bench path --devices 4 --records 10000
    """
    import json

    from fleetloop.bench import as_dict, bench_path, path_table, write_section

    try:
        result = bench_path(devices, records)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    saved = as_dict(result)
    if write:
        write_section("path", saved, path_table(saved), results, docs)
    if json_out:
        typer.echo(json.dumps(saved))
    else:
        typer.echo(f"{result.records} records from {result.devices} devices in the cloud in "
                   f"{result.in_cloud_s} s: {result.records_per_s} records/s "
                   f"(exactly once: {'yes' if result.exactly_once else 'NO'})")
    if not result.exactly_once:
        raise typer.Exit(1)


@bench_app.command("gateway")
def bench_gateway_cmd(
    devices: Annotated[int, typer.Option(min=1, max=64, help="Stand-in devices publishing at once.")] = 4,
    records: Annotated[int, typer.Option(min=1, max=60000, help="Records per device.")] = 50000,
    frame_records: Annotated[int, typer.Option(min=1, max=16, help="Records per frame in the frames run.")] = 16,
    drain: Annotated[bool, typer.Option(help="Also time a MicroPython bike draining its full offline buffer.")] = True,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """The gateway's ingest rate next to a bare paho subscriber's, on the same broker in one
    run (QoS 1, mTLS, 4 mosquitto_pub stand-ins), then with frames, and the time a MicroPython
    bike takes to drain its full offline buffer; exits 1 if a record was lost or stored twice.

    Example: fleetloop bench gateway --json
    """
    import json

    from fleetloop.bench import write_section
    from fleetloop.bench_gateway import bench_drain, bench_gateway, gateway_table

    def say(line: str) -> None:
        typer.echo(line, err=True)

    try:
        result = bench_gateway(devices, records, frame_records, log=say)
        if drain:
            say("a bike's offline backlog")
            result["drain"] = bench_drain()
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if write:
        write_section("gateway", result, gateway_table(result), results, docs)
    typer.echo(json.dumps(result, indent=2) if json_out else gateway_table(result))
    if not result["exactly_once"]:
        raise typer.Exit(1)


@bench_app.command("cloud")
def bench_cloud_cmd(
    gateways: Annotated[int, typer.Option(min=1, max=64, help="Gateways posting at once.")] = 8,
    batches: Annotated[int, typer.Option(min=1, max=1000, help="Batches per gateway.")] = 20,
    records: Annotated[int, typer.Option(min=4, max=20000, help="Records per batch.")] = 2000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Workers of the PostgreSQL run.")] = 4,
    postgres: Annotated[bool, typer.Option(help="Also run on a throwaway PostgreSQL cluster.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Records/s the cloud ingests over HTTP (signature, chain and tag checks) on SQLite and
    PostgreSQL, 1 and N workers, next to a bare parse loop; database bytes per million records;
    the query time of a 30-day device plot (one record a minute) on each backend.

    Example: fleetloop bench cloud --json
    """
    import json

    from fleetloop.bench_cloud import as_dict, bench_cloud

    result = bench_cloud(gateways, batches, records, workers, postgres)
    if json_out:
        typer.echo(json.dumps(as_dict(result)))
    else:
        typer.echo(f"parse only: {result.parse_records_per_s} records/s ({result.cores} cores)")
        for run in result.runs:
            typer.echo(f"{run.backend}, {run.workers} worker(s) on {result.cores} cores: "
                       f"{run.records_per_s} records/s ({run.of_parse:.2f} of parse only), "
                       f"{run.cpu_us_per_record} µs of cloud CPU per record, "
                       f"{run.db_bytes_per_million} DB bytes per million records, "
                       f"exactly once: {'yes' if run.exactly_once else 'NO'}")
        for plot in result.plots:
            typer.echo(f"{plot.backend}: 30-day plot of {plot.records} records in "
                       f"{plot.points} points: {plot.median_ms} ms (median of {plot.runs})")
        for note in result.notes:
            typer.echo(note)
    if not all(run.exactly_once for run in result.runs):
        raise typer.Exit(1)


@bench_app.command("recovery")
def bench_recovery_cmd(
    outage: Annotated[float, typer.Option(min=1, max=600, help="Seconds the cloud is down.")] = 60.0,
    records: Annotated[int, typer.Option(min=1, max=60000, help="Records waiting in the spool.")] = 500,
    baseline: Annotated[bool, typer.Option(help="Also run without the health probe.")] = True,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """Seconds from the cloud's return after an outage to the gateway's backlog in it (the
    gateway probes the cloud's health while its uploads back off; goal under 2 s), with the
    same run without the probe as the baseline.

    Example: fleetloop bench recovery --outage 60
    """
    import json
    import time

    from fleetloop.bench import write_section
    from fleetloop.bench_recovery import as_dict, bench_recovery, table

    result = as_dict(bench_recovery(outage, records, baseline,
                                    log=lambda line: None if json_out else typer.echo(line)))
    result["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
    if write:
        write_section("recovery", result, table(result), results, docs)
    if json_out:
        typer.echo(json.dumps(result))
    else:
        for run in result["runs"]:
            typer.echo(f"{'with' if run['probe'] else 'without'} the probe: {run['records']} "
                       f"records in the cloud {run['recovery_s']} s after its return "
                       f"({run['outage_s']:g} s outage)")


@bench_app.command("churn")
def bench_churn_cmd(
    bikes: Annotated[int, typer.Option(min=1, max=5000, help="Simulated riders.")] = 500,
    mirrors: Annotated[int, typer.Option(min=0, max=5000, help="Simulated mirror users.")] = 100,
    weeks: Annotated[int, typer.Option(min=6, max=52, help="Simulated weeks.")] = 12,
    week: Annotated[int, typer.Option(min=2, max=50, help="The week the list is made.")] = 10,
    seed: Annotated[list[int] | None, typer.Option(
        "--seed", help="Fleet seed (repeat for several; default 1, 2, 3).")] = None,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """Precision and recall of the cloud's churn-risk list made at week W against the
    simulator's truth two weeks later (riders already lapsed at W left out).

    Example: fleetloop bench churn --bikes 500 --mirrors 100 --json
    """
    import json
    import time

    from fleetloop.bench import write_section
    from fleetloop.bench_churn import SCORED_SEEDS, bench, table

    try:
        result = bench(tuple(seed or SCORED_SEEDS), bikes, mirrors, weeks, week,
                       log=lambda line: None if json_out else typer.echo(line))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    result["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
    if write:
        write_section("churn", result, table(result), results, docs)
    if json_out:
        typer.echo(json.dumps(result))
    else:
        m = result["mean"]
        typer.echo(f"mean precision {m['precision']}, recall {m['recall']} "
                   f"(target {result['target']} each)")


@bench_app.command("heap")
def bench_heap_cmd(
    profile: Annotated[list[str] | None, typer.Option(
        "--profile", help="Profile to measure (repeat for several; default: bike, mirror, engine).")] = None,
    seconds: Annotated[float, typer.Option(
        min=3, max=3600, help="How long each run samples (the budget says 60 s).")] = 60.0,
    interval_ms: Annotated[int, typer.Option(
        "--interval-ms", min=100, max=10000, help="Sampling period of the devices.")] = 250,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """The smallest MicroPython heap (KB) each profile runs at through a real gateway: sampling,
    a signed config applied, a broker restart survived, every record acked, no reset, no
    MemoryError; plus the lowest free heap at 64 KB and the heap free at boot from the ROMFS
    firmware and from .mpy files. Exits 1 if a profile does not run at 56 KB.

    Example: fleetloop bench heap --json
    """
    import json
    import time

    from fleetloop.bench import PROFILES, bench_heap, boot_heap, write_heap_results

    chosen = tuple(profile or PROFILES)
    unknown = [p for p in chosen if p not in PROFILES]
    if unknown:
        raise typer.BadParameter(f"choose from {', '.join(PROFILES)}", param_hint="--profile")

    def say(line: str) -> None:
        if not json_out:
            typer.echo(line)

    try:
        result = bench_heap(chosen, seconds, interval_ms, log=say)
        result["boot_heap"] = boot_heap(chosen)
    except (FileNotFoundError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    result["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
    if write:
        write_heap_results(result, results, docs)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        for name, p in result["profiles"].items():
            boot = result["boot_heap"].get(name, {})
            typer.echo(f"{name}: runs at {p['runs_at_kb']} KB; lowest free at 64 KB "
                       f"{p['lowest_free_at_64k_bytes']} B; free at boot (64 KB) "
                       f"{boot.get('romfs')} B from ROMFS, {boot.get('mpy')} B from .mpy")
    if not all(p["runs_at_required"] for p in result["profiles"].values()):
        raise typer.Exit(1)


@bench_app.command("connections")
def bench_connections_cmd(
    devices: Annotated[int, typer.Option(min=1, max=20000, help="Devices to connect.")] = 5000,
    reconnect_rate: Annotated[int | None, typer.Option(
        min=1, max=1_000_000, help="The gateway's reconnect rate (connections/s) that sets its"
        " back-pressure hint (default: the gateway's).", show_default=False)] = None,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """N simulated devices (the real device code) connected over mTLS to one gateway: the time
    to connect all, the broker's and the gateway's memory per device, and a reconnect storm
    (the broker killed and restarted) with the devices honouring the back-pressure hint: the
    time until all are back and the peak connections per second.

    Example: fleetloop bench connections --devices 5000 --json
    """
    import json

    from fleetloop.bench import write_section
    from fleetloop.fleet.connections import bench_connections
    from fleetloop.fleet.sizing import connections_table

    result = bench_connections(devices, reconnect_rate=reconnect_rate)
    if write:
        write_section("connections", result, connections_table(result), results, docs)
    typer.echo(json.dumps(result, indent=2) if json_out else connections_table(result))
    if result["connected"] < devices:
        raise typer.Exit(1)


@bench_app.command("fleet")
def bench_fleet_cmd(
    bikes: Annotated[int, typer.Option(min=0, max=20000)] = 500,
    mirrors: Annotated[int, typer.Option(min=0, max=20000)] = 100,
    engines: Annotated[int, typer.Option(min=0, max=20000)] = 50,
    weeks: Annotated[float, typer.Option(min=0.01, max=104)] = 12,
    speed: Annotated[float, typer.Option(min=1, max=1_000_000)] = 20000,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """A simulated fleet (500 bikes, 100 mirrors, 50 engines by default) over 12 simulated
    weeks through the real stack: lost and duplicated records (both must be 0), the time it
    took, records per second, and the sample-to-queryable latency (p50, p99) under that load.

    Example: fleetloop bench fleet --json
    """
    import json

    from fleetloop.bench import write_section
    from fleetloop.fleet.sizing import bench_fleet, fleet_table

    if bikes + mirrors + engines == 0:
        raise typer.BadParameter("at least one device", param_hint="--bikes")
    result = bench_fleet(bikes, mirrors, engines, weeks, speed)
    if write:
        write_section("fleet", result, fleet_table(result), results, docs)
    typer.echo(json.dumps(result, indent=2) if json_out else fleet_table(result))
    if result["lost"] or result["duplicates"] or not result["complete"]:
        raise typer.Exit(1)


@bench_app.command("loop")
def bench_loop_cmd(
    bikes: Annotated[int, typer.Option(min=8, max=20000, help="Simulated bikes.")] = 500,
    mirrors: Annotated[int, typer.Option(min=0, max=20000, help="Simulated mirrors.")] = 100,
    engines: Annotated[int, typer.Option(min=0, max=20000, help="Simulated engines.")] = 50,
    weeks: Annotated[float, typer.Option(min=3, max=52, help="Simulated weeks.")] = 12,
    speed: Annotated[float, typer.Option(min=1, max=1_000_000,
                                         help="Data clock over wall clock.")] = 20000,
    seed: Annotated[int, typer.Option(help="The fleet's seed and the policies' split seed.")] = 1,
    helpful: Annotated[int, typer.Option(min=4, help="Bikes in the coach-mode cohort.")] = 250,
    harmful: Annotated[int, typer.Option(min=4, help="Bikes in the target-power cohort.")] = 150,
    start_week: Annotated[float, typer.Option(min=1, help="Week the policies start.")] = 4,
    window_days: Annotated[int, typer.Option(min=1, max=365,
                                             help="The policies' evaluation window.")] = 14,
    churn_week: Annotated[int, typer.Option(min=2, help="Week of the churn-risk list.")] = 10,
    interval_s: Annotated[int, typer.Option(min=1, max=3600,
                                            help="Sampling period while in use.")] = 60,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """The optimisation loop proved on a simulated fleet: a helpful policy (coach mode on)
    and a harmful one (a target power no rider sustains) started through the API on two
    cohorts of bikes and judged by the cloud; the helpful one must be kept with its lift
    inside the truth's range, the harmful one reverted at its first evaluation, no record
    lost; the churn-risk list at week W scored against the truth at W + 2. Exits 1 when
    the proof fails.

    Example: fleetloop bench loop --bikes 500 --mirrors 100 --engines 50 --weeks 12 --json
    """
    import json
    import time

    from fleetloop.bench import write_section
    from fleetloop.bench_loop import LoopPlan, bench_loop, table

    plan = LoopPlan(bikes=bikes, mirrors=mirrors, engines=engines, weeks=weeks, speed=speed,
                    seed=seed, helpful=helpful, harmful=harmful, start_week=start_week,
                    window_days=window_days, churn_week=churn_week,
                    interval_ms=interval_s * 1000)
    try:
        plan.check()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    result = bench_loop(plan, log=lambda line: typer.echo(line, err=True))
    result["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
    if write:
        write_section("loop", result, table(result), results, docs)
    typer.echo(json.dumps(result, indent=2) if json_out else table(result))
    if not result["ok"]:
        raise typer.Exit(1)


@bench_app.command("ota")
def bench_ota_cmd(
    devices: Annotated[int, typer.Option(min=1, max=20000,
                                         help="Simulated devices behind the gateway.")] = 200,
    real: Annotated[int, typer.Option(min=0, max=20,
                                      help="Devices on real MicroPython among them.")] = 3,
    soak_s: Annotated[int, typer.Option("--soak-s", min=0, max=3600)] = 30,
    json_out: JsonOpt = False,
    results: ResultsOpt = RESULTS,
    docs: DocsOpt = DOCS,
    write: WriteOpt = True,
) -> None:
    """What an update costs: bytes on the air for a one-module change (delta against full
    bundle), the peak heap of an install on real MicroPython (budget 64 KB), and a rollout to
    DEVICES simulated bikes and REAL bikes on MicroPython behind one gateway (time to finish,
    downloads from the cloud: the target is one per version).

    Example: fleetloop bench ota --devices 200 --json
    """
    import json

    from fleetloop.bench import write_section
    from fleetloop.bench_ota import bench_ota, ota_table
    from fleetloop.fleet.rollout_bench import bench_rollout

    def say(line: str) -> None:
        typer.echo(line, err=True)

    result = bench_ota(log=say)
    result["rollout"] = bench_rollout(devices, real, soak_s, log=say)
    if write:
        write_section("ota", result, ota_table(result), results, docs)
    typer.echo(json.dumps(result, indent=2) if json_out else ota_table(result))
    heap_ok = all(h["fits_budget"] for h in result["install_heap"])
    rollout = result["rollout"]
    if not heap_ok or rollout["state"] != "completed" or rollout["cloud_downloads"] != 1:
        raise typer.Exit(1)


@app.command()
def demo(
    home: HomeOpt = DEFAULT_HOME,
    seconds: Annotated[float, typer.Option(envvar="DEMO_SECONDS", help="Stop after this long (0 = until Ctrl-C).")] = 0,
) -> None:
    """Start a cloud, a gateway and three MicroPython devices (bike, mirror, engine) and show them live.

    Example: DEMO_SECONDS=30 fleetloop demo
    """
    from fleetloop.demo import run_demo

    raise typer.Exit(run_demo(home, seconds))
