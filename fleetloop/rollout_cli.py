"""`fleetloop rollout`: cloud ops' updates, a thin client of the cloud's API (POST
/api/v1/bundles, /api/v1/rollouts and their pause, resume and abort; GET to watch). Same
token and URL options as `fleetloop config`.

Exit codes: 0 done; 1 the cloud refused or could not be reached (its reason on stderr);
2 bad usage (options, a file that cannot be read); 3 `status --watch` ended on a rollout that
stopped without completing (paused, auto-paused or aborted).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from fleetloop.config_cli import (
    DEFAULT_CLOUD,
    CloudOpt,
    JsonOpt,
    TokenOpt,
    _call,
    _ok,
    _token,
    fail,
)
from protocol.ota import STATUSES

app = typer.Typer(
    help="Updates for cloud ops: upload release bundles, roll them out in staged waves with a"
    " soak and an automatic pause, watch, pause, resume or abort.\n\n"
    "Example: fleetloop rollout create --bundle bike-0.2.0 --cohort bikes --token-file ops-token",
    no_args_is_help=True,
)
CONTENT_TYPE = "application/vnd.fleetloop.bundle"
STOPPED = 3  # exit code of `status --watch` when the rollout stops without completing
_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
IdArg = Annotated[str, typer.Argument(help="The rollout's id, e.g. r-3.")]


def duration(text: str, what: str) -> int:
    """Seconds of "90", "90s", "15m", "1h", "2d"; a usage error otherwise."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*([a-z]*)\s*", text.lower())
    if m is None or m.group(2) not in _UNITS:
        raise fail(f"{what} wants a duration like 90s, 15m, 1h or 2d, got {text!r}", 2)
    return int(m.group(1)) * _UNITS[m.group(2)]


def ratio(text: str, what: str) -> float:
    """0.1 of "10%" or "0.1"; a usage error outside 0..1."""
    try:
        value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise fail(f"{what} wants a share like 10% or 0.1, got {text!r}", 2) from None
    if not 0 <= value <= 1:
        raise fail(f"{what} must be between 0% and 100%, got {text!r}", 2)
    return value


def percents(text: str) -> list[float]:
    try:
        return [float(p.strip().rstrip("%")) for p in text.split(",") if p.strip()]
    except ValueError:
        raise fail(f"--waves wants percentages like 1,10,50,100, got {text!r}", 2) from None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[w]} {w}" for w in STATUSES if counts.get(w)) or "-"


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def bundle_table(b: dict[str, Any]) -> Table:
    table = Table(title=f"bundle {b['key']}", show_header=False)
    for name in ("id", "kind", "base", "product", "version", "min_version", "bytes", "files",
                 "carried", "sha256", "created_by"):
        table.add_row(name, "-" if b[name] is None else str(b[name]))
    return table


def rollouts_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="rollouts")
    for head in ("id", "bundle", "state", "wave", "devices", "created (UTC)"):
        table.add_column(head)
    for r in rows:
        started = [w["wave"] for w in r["waves"] if w["started_ms"] is not None]
        table.add_row(r["id"], r["bundle"], r["state"] + (f" ({r['reason']})" if r["reason"]
                                                          else ""),
                      f"{max(started, default=0)} of {len(r['waves'])}", _counts(r["counts"]),
                      _when(r["created_ms"]))
    return table


def rollout_view(r: dict[str, Any]) -> Group:
    head = Table(title=f"rollout {r['id']}: {r['bundle']} ({r['product']} {r['version']})",
                 show_header=False)
    head.add_row("state", r["state"] + (f": {r['reason']}" if r["reason"] else ""))
    head.add_row("target", json.dumps(r["target"]))
    head.add_row("settings", f"soak {r['soak_s']} s, threshold {r['failure_threshold']:.0%},"
                 f" deadline {r['deadline_s']} s, heap ratio {r['heap_ratio']:.0%}")
    head.add_row("devices", _counts(r["counts"]))
    waves = Table(title="waves")
    for col in ("wave", "percent", "devices", "words", "started (UTC)", "soak until (UTC)"):
        waves.add_column(col)
    for w in r["waves"]:
        waves.add_row(str(w["wave"]), f"{w['percent']:g}%", str(w["devices"]),
                      _counts(w["counts"]), _when(w["started_ms"]), _when(w["soak_until_ms"]))
    devices = Table(title="devices")
    for col in ("device", "wave", "word", "progress", "firmware", "reason"):
        devices.add_column(col)
    for d in r["devices"] or []:
        devices.add_row(d["device"], str(d["wave"]), d["word"],
                        "" if d["progress"] is None else f"{d['progress']}%", d["version"] or "",
                        d["reason"])
    parts: list[Any] = [head, waves, devices]
    if r.get("skipped"):
        skipped = Table(title="left out")
        skipped.add_column("device")
        skipped.add_column("why")
        for s in r["skipped"]:
            skipped.add_row(s["device"], s["reason"])
        parts.append(skipped)
    return Group(*parts)


def _say_refusals(resp: httpx.Response, as_json: bool) -> None:
    """Every reason of a 422 on stderr, one a line (--json callers read them in the body)."""
    if resp.status_code == 422 and not as_json:
        for reason in resp.json().get("reasons", []):
            typer.echo(f"refused: {reason}", err=True)


def _show(body: Any, as_json: bool, render: Any) -> None:
    if as_json:
        typer.echo(json.dumps(body, indent=2, sort_keys=True))
    else:
        Console().print(render(body))


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="A bundle file (fleetloop fw build / fw diff).")],
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Upload a release bundle; the cloud verifies it with the release public key and says every reason it refuses one.

    Example: fleetloop rollout upload bike-0.2.0.flb --cloud http://127.0.0.1:8000 --token-file ops-token
    """
    token = _token(token_file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}", 2) from exc
    try:
        with httpx.Client(base_url=cloud.rstrip("/"), timeout=60) as http:
            resp = http.post("/api/v1/bundles", content=data, headers={
                "Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE})
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the cloud at {cloud}: {exc}") from exc
    _say_refusals(resp, as_json)
    body = _ok(resp)
    if not as_json:
        typer.echo("stored" if resp.status_code == 201 else "already stored (same bytes)")
    _show(body, as_json, bundle_table)


@app.command()
def create(
    bundle: Annotated[str, typer.Option("--bundle", help="The bundle's key, e.g. bike-0.2.0.")],
    cohort: Annotated[str | None, typer.Option("--cohort", help="A cohort's devices.",
                                               show_default=False)] = None,
    device: Annotated[list[str] | None, typer.Option(
        "--device", help="A device, repeatable (instead of --cohort).", show_default=False)] = None,
    waves: Annotated[str, typer.Option("--waves", help="Percent done by each wave's end.")
                     ] = "1,10,50,100",
    soak: Annotated[str, typer.Option("--soak", help="Soak of a wave and of each committed"
                                      " device.")] = "1h",
    threshold: Annotated[str, typer.Option("--threshold", help="A wave failing more than this"
                                           " auto-pauses.")] = "10%",
    deadline: Annotated[str, typer.Option("--deadline", help="Silence after a device started"
                                          " that counts as a failure.")] = "1h",
    heap_ratio: Annotated[str, typer.Option("--heap-ratio", help="Lowest free heap after commit,"
                                            " as a share of the device's baseline.")] = "80%",
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Start a rollout of a bundle to a cohort or to listed devices, in staged waves.

    Example: fleetloop rollout create --bundle bike-0.2.0 --cohort bikes --waves 1,10,50,100 --soak 1h --threshold 10% --token-file ops-token
    """
    if (cohort is None) == (not device):
        raise fail("give --cohort or --device (one or more), not both", 2)
    body: dict[str, Any] = {
        "bundle": bundle, "waves": percents(waves), "soak_s": duration(soak, "--soak"),
        "failure_threshold": ratio(threshold, "--threshold"),
        "deadline_s": duration(deadline, "--deadline"),
        "heap_ratio": ratio(heap_ratio, "--heap-ratio")}
    body.update({"cohort": cohort} if cohort is not None else {"devices": device})
    resp = _call("POST", cloud, "/api/v1/rollouts", _token(token_file), json=body)
    _say_refusals(resp, as_json)
    _show(_ok(resp), as_json, rollout_view)


@app.command("list")
def list_(cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Every rollout, newest first: state, current wave and devices by word.

    Example: fleetloop rollout list --token-file ops-token
    """
    _show(_ok(_call("GET", cloud, "/api/v1/rollouts", _token(token_file))), as_json,
          rollouts_table)


@app.command()
def status(
    rollout_id: IdArg,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until the rollout completes"
                                        " or stops (exit 3 when it stops).")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between"
                                            " refreshes with --watch.")] = 5.0,
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """A rollout's state, waves and devices (word, progress, firmware, reason).

    Example: fleetloop rollout status r-3 --watch --token-file ops-token
    """
    token = _token(token_file)

    def fetch() -> dict[str, Any]:
        body: dict[str, Any] = _ok(_call("GET", cloud, f"/api/v1/rollouts/{rollout_id}", token))
        return body

    body = fetch()
    if not watch:
        _show(body, as_json, rollout_view)
        return
    try:
        with Live(console=Console(), auto_refresh=False) as live:
            while True:
                shown: Any = json.dumps(body, indent=2, sort_keys=True) if as_json \
                    else rollout_view(body)
                live.update(shown, refresh=True)
                if body["state"] != "running":
                    break
                time.sleep(interval)
                body = fetch()
    except KeyboardInterrupt:
        return
    if body["state"] != "completed":
        raise typer.Exit(STOPPED)


def _control(action: str, rollout_id: str, cloud: str, token_file: Path | None,
             as_json: bool) -> None:
    resp = _call("POST", cloud, f"/api/v1/rollouts/{rollout_id}/{action}", _token(token_file))
    _show(_ok(resp), as_json, rollout_view)


@app.command()
def pause(rollout_id: IdArg, cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Pause a running rollout: no new offers; devices mid-download keep theirs.

    Example: fleetloop rollout pause r-3 --token-file ops-token
    """
    _control("pause", rollout_id, cloud, token_file, as_json)


@app.command()
def resume(rollout_id: IdArg, cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Resume a paused or auto-paused rollout (after an auto-pause, its failures are accepted).

    Example: fleetloop rollout resume r-3 --token-file ops-token
    """
    _control("resume", rollout_id, cloud, token_file, as_json)


@app.command()
def abort(rollout_id: IdArg, cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Abort a rollout: every offer is withdrawn, the final words stay.

    Example: fleetloop rollout abort r-3 --token-file ops-token
    """
    _control("abort", rollout_id, cloud, token_file, as_json)
