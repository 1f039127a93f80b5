"""`fleetloop config`: cloud ops' config profiles (per product, cohort or device) and drift, a
thin client of the cloud's API (PUT/GET /api/v1/profiles/{kind}/{id}, POST .../rollback,
GET /api/v1/drift). Precedence, key by key: device > cohort > product."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

app = typer.Typer(
    help="Config profiles for cloud ops: desired settings per product, cohort or device"
    " (device over cohort over product), versioned, with rollback, and drift.\n\n"
    "Example: fleetloop config set --product bike --set interval_ms=500 --token-file ops-token",
    no_args_is_help=True,
)

CloudOpt = Annotated[str, typer.Option(
    "--cloud", envvar="FLEETLOOP_CLOUD_URL", help="Cloud base URL.")]
TokenOpt = Annotated[Path | None, typer.Option(
    "--token-file", help="File holding an ops token (default: $FLEETLOOP_TOKEN, else"
    " $FLEETLOOP_ADMIN_TOKEN).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the cloud's answer as JSON.")]
ProductOpt = Annotated[str | None, typer.Option("--product", help="A product's profile.",
                                                show_default=False)]
CohortOpt = Annotated[str | None, typer.Option("--cohort", help="A cohort's profile.",
                                               show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="One device's profile.",
                                               show_default=False)]
DEFAULT_CLOUD = "http://127.0.0.1:8000"


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise fail(f"cannot read the token file {token_file}: {exc.strerror}", 2) from exc
        if token:
            return token
        raise fail(f"the token file {token_file} is empty", 2)
    for name in ("FLEETLOOP_TOKEN", "FLEETLOOP_ADMIN_TOKEN"):
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    raise fail("a token is needed: --token-file, or FLEETLOOP_TOKEN", 2)


def _scope(product: str | None, cohort: str | None, device: str | None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("product", product), ("cohort", cohort), ("device", device))
             if v is not None]
    if len(given) != 1:
        raise fail("give exactly one of --product, --cohort, --device", 2)
    return given[0]


def _call(method: str, cloud: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    try:
        with httpx.Client(base_url=cloud.rstrip("/"), timeout=30) as http:
            return http.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the cloud at {cloud}: {exc}") from exc


def _ok(resp: httpx.Response) -> Any:
    if resp.is_success:
        return resp.json()
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = resp.text[:300]
    raise fail(f"the cloud answered {resp.status_code}: {detail}")


def parse_sets(pairs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise fail(f"--set wants name=integer, got {pair!r}", 2) from None
        if not sep or not name.strip():
            raise fail(f"--set wants name=integer, got {pair!r}", 2)
    return out


def _show(profile: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(profile, indent=2, sort_keys=True))
        return
    typer.echo(f"{profile['kind']} {profile['scope']}: version {profile['version']}")
    for name, value in sorted(profile["settings"].items()):
        typer.echo(f"  {name} = {value}")
    if profile.get("configs"):
        typer.echo(f"new config versions: {len(profile['configs'])} device(s)")
    if len(profile["history"]) > 1:
        typer.echo("history (newest first):")
        for h in profile["history"]:
            typer.echo(f"  v{h['version']} by {h['created_by']}: {json.dumps(h['settings'])}")


@app.command("set")
def set_(
    sets: Annotated[list[str], typer.Option("--set", help="name=integer, repeatable.")],
    product: ProductOpt = None, cohort: CohortOpt = None, device: DeviceOpt = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Make the --set values the whole profile (default: change only"
        " those keys of the active version).")] = False,
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """A new version of a profile: its devices get a new signed config where their resolved settings change.

    Example: fleetloop config set --cohort bikes-r2 --set interval_ms=500 --set heartbeat_s=30 --cloud http://127.0.0.1:8000 --token-file ops-token
    """
    kind, scope = _scope(product, cohort, device)
    token = _token(token_file)
    settings = parse_sets(sets)
    if not replace:
        current = _call("GET", cloud, f"/api/v1/profiles/{kind}/{scope}", token)
        if current.status_code != 404:
            settings = {**_ok(current)["settings"], **settings}
    resp = _call("PUT", cloud, f"/api/v1/profiles/{kind}/{scope}", token,
                 json={"settings": settings})
    _show(_ok(resp), as_json)


@app.command()
def show(
    product: ProductOpt = None, cohort: CohortOpt = None, device: DeviceOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """The active version of a profile and its history.

    Example: fleetloop config show --product bike --json --token-file ops-token
    """
    kind, scope = _scope(product, cohort, device)
    _show(_ok(_call("GET", cloud, f"/api/v1/profiles/{kind}/{scope}", _token(token_file))),
          as_json)


@app.command()
def rollback(
    version: Annotated[int, typer.Option("--version", min=1, help="The version to go back to.")],
    product: ProductOpt = None, cohort: CohortOpt = None, device: DeviceOpt = None,
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """A new version with an earlier version's settings (history is never rewritten).

    Example: fleetloop config rollback --product bike --version 3 --token-file ops-token
    """
    kind, scope = _scope(product, cohort, device)
    resp = _call("POST", cloud, f"/api/v1/profiles/{kind}/{scope}/rollback",
                 _token(token_file), params={"version": version})
    _show(_ok(resp), as_json)


@app.command()
def drift(
    cloud: CloudOpt = DEFAULT_CLOUD, token_file: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Devices whose reported config is not their desired one, and why: rejected, offline, not yet applied.

    Example: fleetloop config drift --json --token-file ops-token
    """
    rows = _ok(_call("GET", cloud, "/api/v1/drift", _token(token_file)))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        typer.echo("no drift: every device reports its desired config")
        return
    for d in rows:
        typer.echo(f"{d['device']}: {d['status']} (desired v{d['desired_version']},"
                   f" reported v{d['reported_version']}) {d['reason']}")
