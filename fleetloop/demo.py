"""`fleetloop demo`: one gateway, one cloud and three devices on real MicroPython, shown live.

Everything shown is read from the cloud API and the gateway's status endpoint — what the fleet
really delivered — never from the devices' own output.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fleetloop.procs import ProcessError, port_is_free
from fleetloop.stack import Stack

DEVICES = (("bike-1", "bike"), ("mirror-1", "mirror"), ("engine-1", "engine"))
DEFAULT_PORTS = {"cloud_port": 8000, "mqtt_port": 8883, "status_port": 8884}


def _port(name: str) -> int:
    # The usual port when it is free; 0 lets Stack pick a free one.
    port = DEFAULT_PORTS[name]
    return port if port_is_free(port) else 0


def _short(metrics: dict[str, Any] | None, limit: int = 4) -> str:
    if not metrics:
        return ""
    items = sorted(metrics.items())[:limit]
    return "  ".join(f"{k}={round(v, 1) if isinstance(v, float) else v}" for k, v in items)


def snapshot(stack: Stack) -> Table:
    table = Table(title="fleetloop demo: what the cloud has stored")
    for col in ("device", "runs on", "online", "consent", "stored", "last seq", "config",
                "heap free"):
        table.add_column(col, no_wrap=True)
    table.add_column("last values")
    status = stack.gateway_status() or {}
    online = set(status.get("devices", {}).get("online", []))
    try:
        devices = {d["id"]: d for d in stack.cloud_devices()}
    except Exception as exc:  # the cloud may be restarting; show that instead of dying
        table.caption = f"cloud unreachable: {exc}"
        devices = {}
    for device_id, _profile in DEVICES:
        row = devices.get(device_id, {})
        reported = row.get("reported") or {}
        heap = reported.get("heap_free")
        table.add_row(
            device_id,
            str(reported.get("impl", "")),
            "yes" if device_id in online else "no",
            str(row.get("consent") or ""),
            str(row.get("records", 0)),
            str(row.get("last_seq", "")),
            f"v{reported.get('config_version', 0)} {reported.get('config_status', '')}",
            f"{heap / 1024:.1f} KB" if isinstance(heap, int) else "",
            _short(row.get("last_metrics")),
        )
    spool = status.get("spool", {})
    uplink = status.get("uplink", {})
    table.caption = (table.caption or "") + (
        f" gateway spool: {spool.get('batches', '?')} batches; "
        f"last upload error: {uplink.get('last_error') or 'none'}"
    )
    return table


def run_demo(home: Path, seconds: float) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file has room; do not squeeze the table
    # Dev mode: the dashboard opens without a token, so none is printed to the terminal. The
    # API still wants the admin token (kept in <home>/cloud/admin-token, mode 0600).
    stack = Stack(home=home.resolve(), cloud_port=_port("cloud_port"),
                  mqtt_port=_port("mqtt_port"), status_port=_port("status_port"), dev=True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        console.print(f"[bold]fleetloop demo[/] state in {stack.home}")
        stack.keygen([d for d, _ in DEVICES])
        stack.start_cloud()
        stack.register_gateway()
        stack.enrol(list(DEVICES))  # each device's record key to the cloud, as the factory does
        stack.start_gateway()
        # Each owner grants consent on the product, as its button would: a new device shares
        # nothing beyond its vitals until then (privacy by default).
        for device_id, profile in DEVICES:
            stack.start_device(device_id, profile, consent="personal")
        console.print(f"dashboard: {stack.cloud_url}/")
        console.print(f"API: {stack.cloud_url}/docs  (admin token in {stack.home}/cloud/admin-token)")
        console.print(f"gateway status: {stack.status_url}   (fleetloop gateway diag --home {stack.home})")
        console.print("Ctrl-C stops everything." if not seconds else f"stopping after {seconds:g} s")
        _watch(stack, console, seconds)
        return 0
    except KeyboardInterrupt:
        return 0
    except ProcessError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    finally:
        console.print("stopping devices, gateway, cloud ...")
        stack.stop()
        console.print("stopped.")


def _watch(stack: Stack, console: Console, seconds: float) -> None:
    deadline = time.monotonic() + seconds if seconds else None
    if console.is_terminal:
        with Live(snapshot(stack), console=console, refresh_per_second=2) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(1)
                live.update(snapshot(stack))
        return
    # Not a terminal (CI, a pipe): print the table every few seconds instead of redrawing.
    while deadline is None or time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())) if deadline else 5.0)
        console.print(snapshot(stack))
        sys.stdout.flush()
