"""The numbers that size a deployment, as `make bench` writes them to bench/results.json and
docs/benchmarks.md: connections per gateway (fleetloop.fleet.connections) and a whole fleet
over weeks (`bench_fleet`), with its sample-to-queryable latency."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from fleetloop.fleet.options import Options
from fleetloop.fleet.simulate import Simulation

LATENCY_PROBES = 10


def bench_fleet(bikes: int = 500, mirrors: int = 100, engines: int = 50, weeks: float = 12,
                speed: float = 20000, seed: int = 1, out: Path | None = None) -> dict[str, Any]:
    """A fleet through the real stack over `weeks` simulated weeks: lost, duplicates, time
    taken, records per second and the sample-to-queryable latency on probe bikes."""
    total = bikes + mirrors + engines
    mix = {p: n / total for p, n in (("bike", bikes), ("mirror", mirrors), ("engine", engines))
           if n}
    with tempfile.TemporaryDirectory(prefix="fleetloop-fleet-") as tmp:
        options = Options(devices=total, mix=mix, weeks=weeks, speed=speed, seed=seed,
                          out=Path(out) if out is not None else Path(tmp) / "run",
                          latency_probes=LATENCY_PROBES)
        t0 = time.monotonic()
        s = Simulation(options).run()
        wall = time.monotonic() - t0
    simulate_s = options.wall_span_s
    return {
        "devices": total, "products": s.products, "weeks": weeks, "speed": speed,
        "sampled": s.sampled, "stored": s.stored, "lost": s.lost, "duplicates": s.duplicates,
        "complete": s.complete, "power_cuts": s.power_cuts, "resets": s.resets,
        "wall_s": round(wall, 1), "span_wall_s": round(simulate_s, 1),
        "provision_s": round(s.provision_s, 1),
        "records_per_s": round(s.stored / simulate_s) if simulate_s else None,
        "latency": s.latency, "measured": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def connections_table(r: dict[str, Any]) -> str:
    kb = 1024
    return "\n".join([
        "| devices | connected | all connected in | broker / device | gateway / device | "
        "simulator / device | hint | storm: all back in | storm: peak connects/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r['devices']:,} | {r['connected']:,} | {r['connect_all_s']} s | "
        f"{r['broker_bytes_per_device'] / kb:.1f} KB | {r['gateway_bytes_per_device'] / kb:.1f} KB"
        f" | {r['simulator_bytes_per_device'] / kb:.1f} KB | "
        f"{', '.join(str(h) for h in r['hint_ms'])} ms | {r['storm_all_back_s']} s | "
        f"{r['storm_peak_connects_per_s']} |",
        "",
        f"Measured {r.get('measured', '?')} with `fleetloop bench connections --devices "
        f"{r['devices']}` on {r.get('cores', '?')} cores; the gateway's reconnect rate "
        f"{r.get('reconnect_rate', 'default')} connections/s sets the hint.",
    ])


def fleet_table(r: dict[str, Any]) -> str:
    lat = r.get("latency") or {}
    products = ", ".join(f"{n:,} {p}s" for p, n in r["products"].items())
    return "\n".join([
        "| fleet | simulated | speed | sampled | stored | lost | duplicates | took | "
        "records/s | sample to queryable p50 / p99 | first send to queryable p50 / p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {products} | {r['weeks']:g} weeks | {r['speed']:,.0f}x | {r['sampled']:,} | "
        f"{r['stored']:,} | {r['lost']} | {r['duplicates']} | {r['wall_s']} s | "
        f"{r['records_per_s']:,} | {lat.get('p50_ms')} / {lat.get('p99_ms')} ms | "
        f"{lat.get('sent_p50_ms')} / {lat.get('sent_p99_ms')} ms |",
        "",
        f"Measured {r.get('measured', '?')} with `fleetloop bench fleet` ({r['span_wall_s']} s "
        f"of simulated span, then the drain; provisioning {r['provision_s']} s; latency from "
        f"{lat.get('records', 0):,} records of {LATENCY_PROBES} probe bikes, polled every "
        f"{lat.get('poll_ms', '?')} ms).",
    ])
