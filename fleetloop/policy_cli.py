"""`fleetloop policy`: policies as experiments for cloud ops, a thin client of the cloud's API
(POST /api/v1/policies and its stop; GET to read). Same token and URL options as
`fleetloop config`.

A policy comes from a JSON file (the API's body, `--file`), from flags, or both (flags win
over the file's fields).

Exit codes: 0 done; 1 the cloud refused or could not be reached (its reasons on stderr);
2 bad usage (options, a file that cannot be read or is not a JSON object).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
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
    parse_sets,
)
from fleetloop.rollout_cli import _say_refusals, _show, ratio

app = typer.Typer(
    help="Policies as experiments for cloud ops: a condition on KPIs and a config change, tried"
    " on a random treatment arm against a held-out control, kept or reverted by the cloud on"
    " the evidence.\n\n"
    "Example: fleetloop policy create --name coach-the-fading --product bike"
    " --when 'rides_per_week fell_by 0.33' --set coach_mode=1 --outcome rides_per_week"
    " --token-file ops-token",
    no_args_is_help=True,
)
OPS = ("<", "<=", ">", ">=", "fell_by", "rose_by")
IdArg = Annotated[int, typer.Argument(help="The policy's id.", min=1)]


def clause(text: str) -> dict[str, Any]:
    """{"kpi", "op", "value"} of "rides_per_week fell_by 0.33"; a usage error otherwise."""
    parts = text.split()
    if len(parts) != 3 or parts[1] not in OPS:
        raise fail(f"--when wants 'KPI OP VALUE' with OP one of {' '.join(OPS)},"
                   f" got {text!r}", 2)
    try:
        value = float(parts[2])
    except ValueError:
        raise fail(f"--when wants a number as its value, got {parts[2]!r}", 2) from None
    return {"kpi": parts[0], "op": parts[1], "value": value}


def read_file(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", 2) from exc
    except ValueError as exc:
        raise fail(f"{path} is not JSON: {exc}", 2) from exc
    if not isinstance(body, dict):
        raise fail(f"{path} must hold a JSON object (the policy)", 2)
    return body


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3g}"


def policies_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="policies")
    for head in ("id", "name", "product", "state", "arms", "window end", "last lift (95% CI)"):
        table.add_column(head)
    for p in rows:
        last = p["evaluations"][-1] if p["evaluations"] else None
        lift = "-" if last is None else (
            f"{_num(last['lift'])} [{_num(last['ci_low'])}, {_num(last['ci_high'])}]")
        table.add_row(str(p["id"]), p["name"], p["product"], p["state"],
                      f"{len(p['treatment'])} / {len(p['control'])}",
                      _when(p["window_end_ms"]), lift)
    return table


def policy_view(p: dict[str, Any]) -> Group:
    head = Table(title=f"policy {p['id']}: {p['name']} ({p['product']})", show_header=False)
    head.add_row("state", p["state"] + (f": {p['reason']}" if p["reason"] else ""))
    head.add_row("change", json.dumps(p["change"], sort_keys=True))
    cond = " and ".join(f"{c['kpi']} {c['op']} {c['value']:g}" for c in p["condition"])
    head.add_row("condition", cond or "(every device)")
    head.add_row("outcome", f"{p['outcome']['kpi']}, goal {p['outcome']['goal']}")
    head.add_row("arms", f"{len(p['treatment'])} treatment, {len(p['control'])} control,"
                 f" {len(p['excluded'])} left out (seed {p['seed']})")
    head.add_row("window", f"{_when(p['window_start_ms'])} .. {_when(p['window_end_ms'])}"
                 f" (record time, UTC), {p['extensions']} of {p['max_extensions']} extensions")
    evals = Table(title="evaluations")
    for col in ("window end", "treatment", "control", "lift", "95% CI", "decision"):
        evals.add_column(col)
    for e in p["evaluations"]:
        evals.add_row(_when(e["window_end_ms"]), f"{e['treatment_n']}: {_num(e['treatment_mean'])}",
                      f"{e['control_n']}: {_num(e['control_mean'])}", _num(e["lift"]),
                      f"[{_num(e['ci_low'])}, {_num(e['ci_high'])}]", e["decision"])
    parts: list[Any] = [head, evals]
    if p["excluded"]:
        left = Table(title="left out")
        left.add_column("device")
        left.add_column("why")
        for x in p["excluded"]:
            left.add_row(x["device"], x["reason"])
        parts.append(left)
    return Group(*parts)


@app.command()
def create(
    file: Annotated[Path | None, typer.Option("--file", help="The policy as the API's JSON body.",
                                              show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", show_default=False,
                                             help="Unique: a-z, 0-9 and -.")] = None,
    product: Annotated[str | None, typer.Option("--product", show_default=False,
                                                help="bike, mirror or engine.")] = None,
    cohort: Annotated[str | None, typer.Option("--cohort", help="Only this cohort's devices.",
                                               show_default=False)] = None,
    device: Annotated[list[str] | None, typer.Option(
        "--device", help="A device, repeatable (instead of --cohort).", show_default=False)] = None,
    when: Annotated[list[str] | None, typer.Option(
        "--when", help="A clause 'KPI OP VALUE', repeatable (all must hold).",
        show_default=False)] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="The change: name=integer, repeatable.", show_default=False)] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="The KPI that judges it.",
                                                show_default=False)] = None,
    goal: Annotated[str | None, typer.Option("--goal", help="increase (default) or decrease.",
                                             show_default=False)] = None,
    share: Annotated[str | None, typer.Option("--share", help="Treatment share, 10%..90%"
                                              " (default 50%).", show_default=False)] = None,
    window_days: Annotated[int | None, typer.Option("--window-days", show_default=False,
                                                    help="Evaluation window (default 14).")
                           ] = None,
    extensions: Annotated[int | None, typer.Option("--extensions", show_default=False,
                                                   help="Extra windows when inconclusive"
                                                   " (default 2).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="The split's seed.",
                                             show_default=False)] = None,
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Start a policy as an experiment: matching devices split into treatment and control, the change signed for the treatment.

    Example: fleetloop policy create --name coach-the-fading --product bike --when 'rides_per_week fell_by 0.33' --set coach_mode=1 --outcome rides_per_week --window-days 14 --token-file ops-token
    """
    body: dict[str, Any] = read_file(file) if file is not None else {}
    flags: dict[str, Any] = {"name": name, "product": product, "cohort": cohort,
                             "window_days": window_days, "max_extensions": extensions,
                             "seed": seed}
    body.update({k: v for k, v in flags.items() if v is not None})
    if device:
        body["devices"] = list(device)
    if when:
        body["condition"] = [clause(w) for w in when]
    if sets:
        body["change"] = parse_sets(sets)
    if share is not None:
        body["treatment_share"] = ratio(share, "--share")
    if outcome is not None or goal is not None:
        before = body.get("outcome")
        got: dict[str, Any] = before if isinstance(before, dict) else {}
        body["outcome"] = {**got, **({"kpi": outcome} if outcome else {}),
                           **({"goal": goal} if goal else {})}
    missing = [f"--{k}" for k in ("name", "product", "set", "outcome")
               if {"set": "change"}.get(k, k) not in body]
    if missing:
        raise fail(f"a policy needs {', '.join(missing)} (or --file with them)", 2)
    resp = _call("POST", cloud, "/api/v1/policies", _token(token_file), json=body)
    _say_refusals(resp, as_json)
    _show(_ok(resp), as_json, policy_view)


@app.command("list")
def list_(cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Every policy, newest first: state, arms, window end and the last lift.

    Example: fleetloop policy list --token-file ops-token
    """
    _show(_ok(_call("GET", cloud, "/api/v1/policies", _token(token_file))), as_json,
          policies_table)


@app.command()
def show(policy_id: IdArg, cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """One policy: its state and why, arms, devices left out and every evaluation.

    Example: fleetloop policy show 3 --token-file ops-token
    """
    _show(_ok(_call("GET", cloud, f"/api/v1/policies/{policy_id}", _token(token_file))),
          as_json, policy_view)


@app.command()
def stop(policy_id: IdArg, cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Revert the policy's change now: state stopped.

    Example: fleetloop policy stop 3 --token-file ops-token
    """
    resp = _call("POST", cloud, f"/api/v1/policies/{policy_id}/stop", _token(token_file))
    _show(_ok(resp), as_json, policy_view)
