"""`diag` for field technicians: read a gateway's status (its endpoint while it runs, its files
when it does not), find the problems, and show them first, each with what to check, then the
detail. The exit code says which of those it was (EXIT_*; docs/operations.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from gateway import diag_local, diag_offline, tech_credential
from gateway.diag_problems import Problem
from gateway.diag_problems import find as find_problems
from gateway.diag_render import hint_text as hint_text  # the screen, for callers of diag
from gateway.diag_render import render as render
from gateway.errors import DiagError
from gateway.settings import Settings
from gateway.status import RunInfo, version

EXIT_OK = 0  # running, nothing found
EXIT_PROBLEMS = 1  # running, with problems (each shown with what to check)
EXIT_CANNOT_READ = 2  # bad usage, or the status could not be read (credential, answer)
EXIT_DOWN = 3  # the gateway is not running (diag says why, from its files)


class GatewayDown(DiagError):
    """The gateway does not answer: read its files instead."""


def status_url(home: Path, gateway_id: str) -> str:
    """The status URL a running gateway wrote into its run.json."""
    path = home / "gateways" / gateway_id / "run.json"
    try:
        return RunInfo.read(path).status_url
    except FileNotFoundError:
        raise GatewayDown(f"gateway {gateway_id} is not running under {home} (no {path})") from None
    except (OSError, ValueError, KeyError) as exc:
        raise GatewayDown(f"cannot read {path}: {exc}") from exc


def fetch(url: str, headers: dict[str, str] | None = None, timeout_s: float = 3.0
          ) -> dict[str, Any]:
    try:
        resp = httpx.get(url, timeout=timeout_s, headers=headers)
    except httpx.HTTPError as exc:
        raise GatewayDown(f"gateway is not answering at {url} ({type(exc).__name__})") from exc
    if resp.status_code == 401:
        raise DiagError(f"{url} refused the technician's credential (401): run diag as the "
                        "gateway's user, with the same --home and --id")
    if resp.status_code != 200:
        raise DiagError(f"{url} answered {resp.status_code}: {resp.text[:200]}")
    try:
        body = resp.json()
    except ValueError as exc:
        raise DiagError(f"{url} did not answer JSON") from exc
    if not isinstance(body, dict):
        raise DiagError(f"{url} did not answer a JSON object")
    return body


def gather(s: Settings, url: str | None = None, clock: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """The status of gateway `s`: live from its endpoint, else read from its files (with a
    `down` key), plus what diag reads on the box (certificates, disk, clock against the
    cloud; `clock` given = measured earlier, as --watch does once a minute)."""
    try:
        target = url or status_url(s.home, s.gateway_id)
        path = tech_credential.token_path(s.gateway_dir)
        # No credential file: ask anyway; a gateway that answers says 401 (and diag says why),
        # one that does not answer is down.
        st = fetch(target, tech_credential.header_for(s.gateway_dir) if path.exists() else {})
    except GatewayDown:
        if url is not None and not s.gateway_dir.is_dir():
            raise
        if not s.gateway_dir.is_dir():
            raise DiagError(f"no gateway {s.gateway_id} under {s.home} (no {s.gateway_dir}): "
                            "check --home and --id") from None
        st = diag_offline.read(s)
    else:
        add_spool_age(st, s)
    add_local_facts(st, s, clock)
    return st


def add_spool_age(st: dict[str, Any], s: Settings) -> None:
    """The spool's bytes and oldest age from gateway.db (read-only, beside the running
    gateway) when the status does not report them (gateways before the spool budget)."""
    spool = st.get("spool")
    if not isinstance(spool, dict) or "oldest_age_s" in spool:
        return
    found = diag_offline.db_state(s.db_path, int(time.time() * 1000)).get("spool") or {}
    for key in ("bytes", "oldest_age_s"):
        if key in found:
            spool.setdefault(key, found[key])


def add_local_facts(st: dict[str, Any], s: Settings, clock: dict[str, Any] | None) -> None:
    st.setdefault("certificates", diag_local.certificates(s.home, s.gateway_id))
    if not isinstance(st.get("disk"), dict):
        found = diag_local.disk(s.gateway_dir)
        if found is not None:
            st["disk"] = found
    st.setdefault("diag_version", version())
    if clock is None:
        uplink = st.get("uplink")
        cloud = uplink.get("url") if isinstance(uplink, dict) else None
        cloud = cloud if isinstance(cloud, str) else s.cloud_url
        clock = diag_local.clock_offset(cloud)
    if clock is not None:
        st.setdefault("clock", clock)


def problems(st: dict[str, Any], now_ms: int | None = None) -> list[str]:
    """The problems' messages only, critical first (for scripts and tests that want words)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return [p.message for p in find_problems(st, now_ms)]


def exit_code(st: dict[str, Any], found: list[Problem]) -> int:
    if st.get("down"):
        return EXIT_DOWN
    return EXIT_PROBLEMS if found else EXIT_OK


def to_json(st: dict[str, Any], found: list[Problem]) -> dict[str, Any]:
    return {**st, "problems": [p.to_obj() for p in found]}
