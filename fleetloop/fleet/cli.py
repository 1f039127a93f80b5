"""`fleetloop fleet ...`: the fleet simulator's commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetloop.fleet.options import DEFAULT_MIX, OptionError, Options, parse_mix

app = typer.Typer(help="Simulate a fleet of products running the real device code.\n\n"
                  "Example: fleetloop fleet simulate --devices 100 --weeks 2",
                  no_args_is_help=True)

EXIT_OK = 0
EXIT_INCOMPLETE = 1  # something was lost, or did not reach the cloud within the bound
EXIT_USAGE = 2  # refused before anything started
EXIT_INTERRUPTED = 130


class _Bar:
    """The progress bar on stderr: simulated days, records written and acknowledged."""

    def __init__(self, console: Console, days: float) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                 console=console, transient=False)
        self.days = days
        self.task: TaskID = self.progress.add_task("starting", total=1000, detail="")

    def __call__(self, sim: object) -> None:
        from fleetloop.fleet.simulate import Simulation

        assert isinstance(sim, Simulation)
        if sim.phase in ("simulating", "draining", "waiting for the cloud"):
            written, acked = sim.totals()
            up = sum(1 for b in sim.boards if b.up)
            day = sim.fleet.fraction() * self.days
            self.progress.update(self.task, description=sim.phase,
                                 completed=int(sim.fleet.fraction() * 1000),
                                 detail=f"day {day:.1f}/{self.days:g}  written {written:,}  "
                                        f"acked {acked:,}  online {up:,}")
        else:
            self.progress.update(self.task, description=sim.phase)


@app.command()
def simulate(
    devices: Annotated[int, typer.Option(help="How many products.")],
    mix: Annotated[str, typer.Option(help="Share of each product, adding up to 1.")] =
        ",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items()),
    speed: Annotated[float, typer.Option(
        help="How much faster the data clock runs than the wall clock.")] = 10000.0,
    weeks: Annotated[float, typer.Option(help="Simulated weeks, ending now.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Same seed, same fleet and behaviours.")] = 1,
    out: Annotated[Path, typer.Option(
        help="Directory for the run: its home, truth.json and the summary.")] = Path("fleet-sim"),
    cloud: Annotated[str | None, typer.Option(
        help="A running cloud's URL (with --gateway, --home, --token-file) instead of "
             "starting one.", show_default=False)] = None,
    gateway: Annotated[str | None, typer.Option(
        help="HOST:PORT of the running gateway's broker.", show_default=False)] = None,
    home: Annotated[Path | None, typer.Option(
        help="With --cloud: the fleet's home (its device CA).", show_default=False)] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="With --cloud: a file holding a factory token.", show_default=False)] = None,
    power_cuts: Annotated[int, typer.Option(
        help="Devices whose power is cut once mid-run (they must catch up).")] = 0,
    timeout: Annotated[float | None, typer.Option(
        help="Bound on the whole run, wall seconds (default: from the span).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run N simulated products (the real device code, each with its own identity, certificate, record key, consent and buffer) through a real gateway and Mosquitto to a real cloud, over W simulated weeks ending now, and count what arrived.

    Exit codes: 0 everything written reached the cloud once; 1 something was lost or did not arrive within the bound; 2 the request was refused before anything started; 130 interrupted (what was counted is still printed).

    Example: fleetloop fleet simulate --devices 25 --weeks 3 --speed 30000 --out sim --json
    """
    from fleetloop.fleet.simulate import Simulation

    err = Console(stderr=True)
    try:
        options = Options(devices=devices, mix=parse_mix(mix), speed=speed, weeks=weeks,
                          seed=seed, out=out, cloud=cloud, gateway=gateway, home=home,
                          token_file=token_file, power_cuts=power_cuts, timeout_s=timeout)
        options.check()
    except OptionError as e:
        err.print(f"error: {e}")
        raise typer.Exit(EXIT_USAGE) from None
    bar = _Bar(err, options.weeks * 7)
    try:
        with bar.progress:
            summary = Simulation(options, progress=bar).run()
    except OptionError as e:
        err.print(f"error: {e}")
        raise typer.Exit(EXIT_USAGE) from None
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict(), indent=2) + "\n")
    else:
        Console().print(_table(summary.as_dict()))
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_OK if summary.complete else EXIT_INCOMPLETE)


def _table(s: dict[str, object]) -> Table:
    table = Table(title="fleet simulation", show_header=False)
    for key in ("devices", "products", "weeks", "speed", "sampled", "consent_records", "sent",
                "acknowledged", "stored", "lost", "duplicates", "power_cuts", "resets",
                "wall_s", "provision_s", "complete", "interrupted", "out"):
        value = s[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:,}" for k, v in value.items()) or "none"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        table.add_row(key.replace("_", " "), str(value))
    return table
