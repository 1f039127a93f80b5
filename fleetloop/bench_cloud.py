"""`fleetloop bench cloud`: records per second the cloud ingests through HTTP, with every check
it makes (the batch's Ed25519 signature, its place in the chain, each record's tag under its
device's key, its identity), next to a bare loop that only parses the same batches in the same
run; on SQLite and PostgreSQL with one worker, and on PostgreSQL with several; the database
bytes each backend takes per million records; and how long the dashboard's query for a 30-day
plot of one device takes on each backend.

The batches are sealed in advance (as a gateway's spool holds them): each gateway posts its
chain in order, all gateways at once. Every run gets a fresh database and checks that the cloud
reported every record stored exactly once. PostgreSQL runs in a throwaway cluster
(fleetloop.pgcluster), never the machine's own server.
"""

from __future__ import annotations

import base64
import os
import secrets
import statistics
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fleetloop.procs import Process, free_port
from protocol import record, tag
from protocol.batch import GENESIS, Batch, SealedBatch, fast_records, parse_record, seal

_TOKEN = "bench-admin-token-" + "0" * 16
_T0 = 1_732_345_678_000


@dataclass(frozen=True)
class Fleet:
    """Gateways with their keys and sealed chains, devices with their record keys."""

    gateway_keys: dict[str, Ed25519PrivateKey]
    device_keys: dict[str, bytes]
    chains: dict[str, list[SealedBatch]]
    records: int


@dataclass(frozen=True)
class IngestRun:
    backend: str
    workers: int
    records: int
    seconds: float
    records_per_s: float
    db_bytes: int  # growth of the database during the run
    db_bytes_per_million: int
    exactly_once: bool
    of_parse: float = 0.0  # records_per_s / the parse loop's records/s
    # CPU time of the cloud's processes during the uploads, per record (Linux; 0 elsewhere):
    # what a run costs whatever else shares the cores, and 1e6 / it is one core's ceiling
    cpu_us_per_record: float = 0.0


@dataclass(frozen=True)
class PlotQuery:
    """The dashboard's query for one device's metric over 30 days of one record a minute
    (43,200 records), bucketed in the database: the median of `runs` timings."""

    backend: str
    records: int
    points: int
    median_ms: float
    runs: int
    buckets: int


@dataclass
class CloudBench:
    cores: int
    gateways: int
    batches: int
    records_per_batch: int
    parse_records_per_s: float  # zlib + JSON + each record parsed and checked, one thread
    runs: list[IngestRun] = field(default_factory=list)
    plots: list[PlotQuery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def make_fleet(gateways: int, batches: int, per_batch: int, devices_per_gateway: int = 4) -> Fleet:
    gateway_keys = {f"gw-{g}": Ed25519PrivateKey.generate() for g in range(gateways)}
    device_keys: dict[str, bytes] = {}
    chains: dict[str, list[SealedBatch]] = {}
    per_device = per_batch // devices_per_gateway
    for gw_id, key in gateway_keys.items():
        devices = [f"{gw_id}-d{d}" for d in range(devices_per_gateway)]
        macs = {}
        for device in devices:
            device_keys[device] = secrets.token_bytes(32)
            macs[device] = tag.Hmac(device_keys[device])
        prev, chain = GENESIS, []
        for n in range(batches):
            wires = [
                record.encode(device, 7, n * per_device + i + 1, _T0 + n * per_device + i,
                              {"cadence": 80 + i % 20, "power": (n * per_device + i) % 300},
                              macs[device]).decode()
                for device in devices for i in range(per_device)
            ]
            sealed = seal(Batch(gateway=gw_id, seq=n + 1, prev=prev, created_ms=_T0,
                                records=tuple(wires), version=2), key)
            prev = sealed.digest
            chain.append(sealed)
        chains[gw_id] = chain
    return Fleet(gateway_keys, device_keys, chains,
                 records=gateways * batches * per_device * devices_per_gateway)


def parse_rate(fleet: Fleet) -> float:
    """Records per second of a loop that only parses the batches as the cloud does
    (decompress, orjson, every record through protocol.batch.fast_records, and parse_record
    for any it leaves to the full check): what ingest would reach if it verified nothing and
    stored nothing."""
    start = time.perf_counter()
    count = 0
    for chain in fleet.chains.values():
        for sealed in chain:
            obj = orjson.loads(zlib.decompress(sealed.body))
            items = obj["records"]
            for parsed, item in zip(fast_records(items), items, strict=True):
                if parsed is None:
                    parse_record(item, obj["v"])
                count += 1
    return count / (time.perf_counter() - start)


PLOT_DAYS = 30
PLOT_DEVICE = "plot-1"


def plot_query(target: str | Path, points: int, runs: int = 7) -> PlotQuery:
    """Add a device with 30 days of records at one a minute to the database `target` (after
    an ingest run, so the table holds the other devices' records too), then time the
    dashboard's series query (cloud.services.series.metric_series) over those 30 days."""
    from cloud.db import open_database
    from cloud.services import series
    from cloud.store import DeviceRow, TelemetryRow

    minutes = PLOT_DAYS * 24 * 60
    database = open_database(target)
    database.open()
    try:
        with database.connection() as store:
            if store.get_device(PLOT_DEVICE) is None:
                with store.transaction():
                    store.insert_device(DeviceRow(id=PLOT_DEVICE, product="bike", created_ms=_T0))
                    for low in range(0, minutes, 5000):
                        store.insert_telemetry([
                            TelemetryRow(PLOT_DEVICE, n + 1, _T0 + n * 60_000,
                                         {"cadence": 80 + n % 20, "power": n % 300}, "gw-plot", 1,
                                         incarnation=7)
                            for n in range(low, min(minutes, low + 5000))
                        ])
            device = store.get_device(PLOT_DEVICE)
            assert device is not None
            window = series.Window(_T0, _T0 + minutes * 60_000, points)
            times, buckets = [], 0
            for _ in range(runs):
                start = time.perf_counter()
                got = series.metric_series(store, device, "power", window)
                times.append(time.perf_counter() - start)
                buckets = len(got.buckets)
                if got.count != minutes:
                    raise RuntimeError(f"the plot counted {got.count} records, not {minutes}")
    finally:
        database.close()
    return PlotQuery(
        backend="sqlite" if isinstance(target, Path) else "postgresql", records=minutes,
        points=points, median_ms=round(statistics.median(times) * 1000, 1), runs=runs,
        buckets=buckets,
    )


def _plots(target: str | Path) -> list[PlotQuery]:
    from cloud.services import series

    return [plot_query(target, points) for points in (series.DEFAULT_POINTS, series.MAX_POINTS)]


def _raw_public(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _db_size(target: str | Path) -> int:
    if isinstance(target, Path):
        import sqlite3

        lite = sqlite3.connect(target)  # the WAL's pages into the file first, then measure
        try:
            lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            lite.close()
        return target.stat().st_size
    import psycopg

    with psycopg.connect(target) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def ingest_run(fleet: Fleet, target: str | Path, workers: int, workdir: Path) -> IngestRun:
    """Start `fleetloop cloud serve` on `target` with `workers` workers, register the
    gateways and enrol the devices, then post every chain (gateways at once) and time it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_")}
    env["FLEETLOOP_ADMIN_TOKEN"] = _TOKEN
    cloud = Process(
        f"cloud-{workers}", [sys.executable, "-m", "cloud.cli", "serve", "--home",
                             str(workdir / "home"), "--db", str(target), "--workers",
                             str(workers), "--port", str(port)],
        workdir / "logs" / "cloud.log", env=env,
    ).start()
    admin = {"Authorization": f"Bearer {_TOKEN}"}
    try:
        cloud.wait_for_log(r"(?s)(Application startup complete.*){" + str(workers) + "}",
                           timeout=120)
        tokens = {}
        with httpx.Client(base_url=url, timeout=60) as client:
            for gw_id, key in fleet.gateway_keys.items():
                r = client.post("/api/v1/gateways", headers=admin,
                                json={"id": gw_id, "public_key": _raw_public(key)})
                r.raise_for_status()
                tokens[gw_id] = r.json()["token"]
            for device, dkey in fleet.device_keys.items():
                r = client.post("/api/v1/devices", headers=admin, json={
                    "id": device, "product": "bike", "record_key": base64.b64encode(dkey).decode()})
                r.raise_for_status()
        before = _db_size(target)
        cpu_before = _cpu_s(cloud.pid)

        def upload(gw_id: str) -> int:
            stored = 0
            with httpx.Client(base_url=url, timeout=120) as client:
                for sealed in fleet.chains[gw_id]:
                    r = client.post("/api/v1/ingest", content=sealed.body,
                                    headers=sealed.headers(tokens[gw_id]))
                    r.raise_for_status()
                    stored += int(r.json()["stored"])
            return stored

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(fleet.chains)) as pool:
            stored = sum(pool.map(upload, fleet.chains))
        seconds = time.perf_counter() - start
        cpu = _cpu_s(cloud.pid) - cpu_before
    finally:
        cloud.stop(timeout=30)
    grown = _db_size(target) - before
    return IngestRun(
        backend="sqlite" if isinstance(target, Path) else "postgresql", workers=workers,
        records=fleet.records, seconds=round(seconds, 3),
        records_per_s=round(fleet.records / seconds), db_bytes=grown,
        db_bytes_per_million=round(grown * 1_000_000 / fleet.records),
        exactly_once=stored == fleet.records,
        cpu_us_per_record=round(cpu * 1e6 / fleet.records, 2),
    )


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of the process and its children (the workers of
    `--workers N`) from /proc; 0 where there is no /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, int] = {}
    try:
        entries = [e for e in Path("/proc").iterdir() if e.name.isdigit()]
    except OSError:
        return 0.0
    for entry in entries:
        try:
            # fields after the command (which may hold spaces) in its parentheses
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = int(fields[11]) + int(fields[12])
    family = {pid}
    for child, parent in parents.items():  # the workers are the server's own children
        if parent == pid:
            family.add(child)
    return sum(cpu.get(p, 0) for p in family) / os.sysconf("SC_CLK_TCK")


def bench_cloud(
    gateways: int = 8, batches: int = 20, per_batch: int = 2000, workers: int = 4,
    postgres: bool = True,
) -> CloudBench:
    fleet = make_fleet(gateways, batches, per_batch)
    result = CloudBench(cores=os.cpu_count() or 1, gateways=gateways, batches=batches,
                        records_per_batch=per_batch, parse_records_per_s=round(parse_rate(fleet)))
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-cloud-") as tmp:
        work = Path(tmp)
        result.runs.append(ingest_run(fleet, work / "sqlite" / "cloud.db", 1, work / "sqlite"))
        result.plots.extend(_plots(work / "sqlite" / "cloud.db"))
        if postgres:
            from fleetloop.pgcluster import ClusterUnavailable, start_cluster

            try:
                cluster = start_cluster()
            except ClusterUnavailable as exc:
                result.notes.append(f"PostgreSQL runs skipped: {exc}")
                return _with_ratios(result)
            try:
                import psycopg

                with psycopg.connect(cluster.url(), autocommit=True) as conn:
                    for n in sorted({1, workers}):
                        conn.execute(f"CREATE DATABASE bench{n}")
                for n in sorted({1, workers}):
                    result.runs.append(ingest_run(fleet, cluster.url(f"bench{n}"), n,
                                                  work / f"pg{n}"))
                result.plots.extend(_plots(cluster.url("bench1")))
            finally:
                cluster.stop()
    return _with_ratios(result)


def _with_ratios(result: CloudBench) -> CloudBench:
    """Each run's records/s as a fraction of the parse loop's."""
    result.runs = [replace(run, of_parse=round(run.records_per_s / result.parse_records_per_s, 3))
                   for run in result.runs]
    return result


def as_dict(result: CloudBench) -> dict[str, Any]:
    return asdict(result)
