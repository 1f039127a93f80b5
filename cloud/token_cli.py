"""`fleetloop token create|list|revoke`: API tokens, thin over cloud.services.tokens.

Two ways to reach the tokens:
- offline, on the cloud's database itself (`--home DIR` or `--db PATH`; the default when no
  `--cloud` is given): how whoever runs the server makes the first admin token. Recorded in
  the audit log as actor "offline";
- online, through a running cloud (`--cloud URL --token-file F`, F holding an admin token).

A new token is printed once (or written to `--out FILE`, mode 0600, and not printed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cloud.errors import CloudError
from cloud.private import private_dir
from cloud.services import audit, tokens
from cloud.settings import ENV_DB, Settings
from cloud.store import Store, TokenRow
from protocol.home import ENV_HOME

app = typer.Typer(
    help="API tokens: create (shown once), list, revoke; offline on the cloud's database or "
    "through a running cloud.\n\nExample: fleetloop token create --home .fleetloop --name root "
    "--role admin",
    no_args_is_help=True,
    add_completion=False,
)

HomeOpt = Annotated[Path | None, typer.Option(
    help=f"Offline: the cloud's home (database <home>/cloud/cloud.db); default ${ENV_HOME} or "
    "./.fleetloop.", show_default=False)]
DbOpt = Annotated[str | None, typer.Option(
    "--db", help=f"Offline: the cloud's database: an SQLite file or a postgresql:// URL (or "
    f"${ENV_DB}).", show_default=False)]
CloudOpt = Annotated[str | None, typer.Option(
    help="Online: the cloud's base URL, e.g. http://127.0.0.1:8000.", show_default=False)]
TokenFileOpt = Annotated[Path | None, typer.Option(
    "--token-file", help="Online: file holding an admin token.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class TokenCliError(Exception):
    """A user-facing failure of a token command."""


def _fail(exc: BaseException) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _now_ms() -> int:
    return round(datetime.now(UTC).timestamp() * 1000)


@contextmanager
def _offline(home: Path | None, db: str | None) -> Iterator[Store]:
    from cloud.db import open_database

    settings = Settings.load(home=home, db_path=db)
    database = open_database(settings.database)
    try:
        with database.connection() as store:
            yield store
    finally:
        database.close()


def _remote(cloud: str, token_file: Path | None, method: str, path: str,
            body: dict[str, Any] | None = None) -> Any:
    import httpx

    if token_file is None:
        raise TokenCliError("--cloud needs --token-file (a file holding an admin token)")
    try:
        admin = token_file.read_text().strip()
    except OSError as exc:
        raise TokenCliError(f"cannot read {token_file}: {exc.strerror}") from exc
    try:
        r = httpx.request(method, cloud.rstrip("/") + path, json=body, timeout=10.0,
                          headers={"Authorization": f"Bearer {admin}"})
    except httpx.HTTPError as exc:
        raise TokenCliError(f"cannot reach {cloud}: {exc}") from exc
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:200]
        raise TokenCliError(f"{method} {path} answered {r.status_code}: {detail}")
    return r.json()


def _public(row: TokenRow) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "role": row.role, "customer": row.customer,
            "created_ms": row.created_ms, "created_by": row.created_by,
            "expires_ms": row.expires_ms, "revoked_ms": row.revoked_ms,
            "last_used_ms": row.last_used_ms}


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` (0600, directory 0700) without a moment of looser modes."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


@app.command()
def create(
    name: Annotated[str, typer.Option(help="Who or what uses it (shown in the audit log).")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(tokens.TOKEN_ROLES)}.")],
    customer: Annotated[str | None, typer.Option(
        help="The customer id (role customer only).", show_default=False)] = None,
    expires_days: Annotated[int, typer.Option(
        "--expires-days", min=1, max=tokens.MAX_EXPIRES_DAYS, help="Days until it expires.")]
    = tokens.DEFAULT_EXPIRES_DAYS,
    out: Annotated[Path | None, typer.Option(
        help="Write the token to this file (0600) instead of printing it.",
        show_default=False)] = None,
    home: HomeOpt = None, db: DbOpt = None, cloud: CloudOpt = None,
    token_file: TokenFileOpt = None, json_out: JsonOpt = False,
) -> None:
    """Create a token with a role; it is shown once (the cloud keeps only its SHA-256).

    Example: fleetloop token create --home .fleetloop --name root --role admin --out root.token
    """
    try:
        if cloud:
            body = {"name": name, "role": role, "customer": customer,
                    "expires_days": expires_days}
            answer = _remote(cloud, token_file, "POST", "/api/v1/tokens", body)
            secret = str(answer.pop("token"))
        else:
            with _offline(home, db) as store:
                issued = tokens.create(store, audit.Offline(), name, role, _now_ms(),
                                       customer=customer, expires_days=expires_days)
            answer, secret = _public(issued.row), issued.token
        if out is not None:
            _write_secret(out, secret)
    except (CloudError, TokenCliError, OSError) as exc:
        raise _fail(exc) from None
    if out is None:
        answer["token"] = secret
    if json_out:
        typer.echo(json.dumps(answer))
        return
    typer.echo(f"token {answer['id']} ({answer['role']}, {answer['name']}), expires "
               f"{_when(answer['expires_ms'])} UTC")
    if out is None:
        typer.echo(f"{secret}\n(shown once: keep it now)")
    else:
        typer.echo(f"written to {out} (mode 0600)")


@app.command("list")
def list_cmd(
    home: HomeOpt = None, db: DbOpt = None, cloud: CloudOpt = None,
    token_file: TokenFileOpt = None, json_out: JsonOpt = False,
) -> None:
    """List every token: id, name, role, customer, expiry, revocation, last use (never the
    token).

    Example: fleetloop token list --home .fleetloop
    """
    try:
        if cloud:
            rows: list[dict[str, Any]] = _remote(cloud, token_file, "GET", "/api/v1/tokens")
        else:
            with _offline(home, db) as store:
                rows = [_public(r) for r in tokens.list_tokens(store)]
    except (CloudError, TokenCliError) as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps(rows))
        return
    now = _now_ms()
    for r in rows:
        state = ("revoked" if r["revoked_ms"] is not None
                 else "expired" if r["expires_ms"] <= now else "active")
        who = f" customer={r['customer']}" if r["customer"] else ""
        typer.echo(f"{r['id']:>4}  {state:<7}  {r['role']:<10}  {r['name']}{who}  "
                   f"expires {_when(r['expires_ms'])}  last used {_when(r['last_used_ms'])}")
    if not rows:
        typer.echo("no tokens")


@app.command()
def revoke(
    token_id: Annotated[int, typer.Argument(min=1, help="The token's id (see token list).")],
    home: HomeOpt = None, db: DbOpt = None, cloud: CloudOpt = None,
    token_file: TokenFileOpt = None, json_out: JsonOpt = False,
) -> None:
    """Revoke a token: refused from now on, and its dashboard sessions end.

    Example: fleetloop token revoke 3 --home .fleetloop
    """
    try:
        if cloud:
            row: dict[str, Any] = _remote(cloud, token_file, "DELETE", f"/api/v1/tokens/{token_id}")
        else:
            with _offline(home, db) as store:
                row = _public(tokens.revoke(store, audit.Offline(), token_id, _now_ms()))
    except (CloudError, TokenCliError) as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps(row))
    else:
        typer.echo(f"token {row['id']} ({row['name']}) revoked")
