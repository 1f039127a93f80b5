"""`fleetloop cloud serve --workers 4` on PostgreSQL, for real: four uvicorn worker processes,
several gateways uploading at once, and two requests of one gateway racing (the same batch
twice, as a retry does; seq n and n+1 together). Nothing is lost, nothing is duplicated, each
gateway's chain is stored in order, and the telemetry counts are exact."""

from __future__ import annotations

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from cloudkit import ADMIN, ADMIN_TOKEN, GatewaySim, rec, register
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cloud.cli import app as cloud_cli
from fleetloop.procs import Process, free_port
from protocol.batch import SealedBatch

pytestmark = pytest.mark.e2e

WORKERS = 4
GATEWAYS = 4
BATCHES = 10  # per gateway
DEVICES = 2  # per gateway
PER_DEVICE = 25  # records per device per batch


def _chain(gw: GatewaySim) -> list[SealedBatch]:
    """The gateway's whole chain, sealed in advance (as its spool holds it)."""
    sealed = []
    for n in range(1, BATCHES + 1):
        records = [rec(f"{gw.id}-d{d}", (n - 1) * PER_DEVICE + i + 1)
                   for d in range(DEVICES) for i in range(PER_DEVICE)]
        batch = gw.seal(records, seq=n)
        gw.seq, gw.prev = batch.seq, batch.digest
        sealed.append(batch)
    return sealed


def _post(url: str, token: str, batch: SealedBatch) -> httpx.Response:
    # A new connection per request: the kernel hands each accept to any of the workers.
    with httpx.Client(base_url=url, timeout=60) as client:
        return client.post("/api/v1/ingest", content=batch.body, headers=batch.headers(token))


def _upload(url: str, token: str, chain: list[SealedBatch], pool: ThreadPoolExecutor) -> int:
    """Send the chain two batches at a time: batch n twice at once (a retry racing the
    original) and n+1 together with them; a 409 (n+1 came first) is sent again once n is in,
    as the gateway's uplink does. Returns the records the cloud reported stored."""
    stored = 0
    for i in range(0, len(chain), 2):
        first, second = chain[i], chain[i + 1]
        answers = list(pool.map(lambda b: _post(url, token, b), [first, first, second]))
        assert [a.status_code for a in answers[:2]] == [200, 200], [a.text for a in answers]
        stored += sum(a.json()["stored"] for a in answers[:2])
        last = answers[2]
        while last.status_code == 409:
            last = _post(url, token, second)
        assert last.status_code == 200, last.text
        stored += last.json()["stored"]
    return stored


def test_four_workers_on_postgres_lose_and_duplicate_nothing(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_")}
    env["FLEETLOOP_ADMIN_TOKEN"] = ADMIN_TOKEN
    cloud = Process(
        "cloud",
        [sys.executable, "-m", "cloud.cli", "serve", "--home", str(tmp_path / "home"),
         "--db", pg_url, "--workers", str(WORKERS), "--port", str(port)],
        tmp_path / "logs" / "cloud.log", env=env,
    ).start()
    try:
        every_worker_up = r"(?s)(Application startup complete.*){" + str(WORKERS) + "}"
        cloud.wait_for_log(every_worker_up, timeout=90)
        pids = set(re.findall(r"Started server process \[(\d+)\]", cloud.log()))
        assert len(pids) == WORKERS

        with httpx.Client(base_url=url, timeout=30) as admin:
            sims = []
            for g in range(GATEWAYS):
                key = Ed25519PrivateKey.generate()
                gw_id = f"gw-{g}"
                sims.append(GatewaySim(admin, gw_id, key, register(admin, gw_id, key)))  # type: ignore[arg-type]
            chains = [_chain(sim) for sim in sims]
            with ThreadPoolExecutor(max_workers=3 * GATEWAYS) as requests_pool, \
                    ThreadPoolExecutor(max_workers=GATEWAYS) as gateways_pool:
                stored = list(gateways_pool.map(
                    lambda pair: _upload(url, pair[0].token, pair[1], requests_pool),
                    zip(sims, chains, strict=True)))
            per_gateway = BATCHES * DEVICES * PER_DEVICE
            assert stored == [per_gateway] * GATEWAYS  # replays stored nothing twice

            listed = {g["id"]: g for g in admin.get("/api/v1/gateways", headers=ADMIN).json()}
            assert {g: (listed[g]["last_seq"], listed[g]["gaps"]) for g in listed} == {
                sim.id: (BATCHES, 0) for sim in sims}

        with psycopg.connect(pg_url) as conn:
            # every worker had its own pool on this database
            names = {r[0] for r in conn.execute(
                "SELECT DISTINCT application_name FROM pg_stat_activity"
                " WHERE application_name LIKE 'fleetloop-cloud-%%'")}
            assert len(names) >= WORKERS
            for sim, chain in zip(sims, chains, strict=True):
                rows = conn.execute(
                    "SELECT seq, prev, digest, stored FROM batches WHERE gateway = %s"
                    " ORDER BY seq", (sim.id,)).fetchall()
                # the chain is stored whole and in order: each batch links to the one before
                assert [r[0] for r in rows] == list(range(1, BATCHES + 1))
                assert [r[2] for r in rows] == [b.digest for b in chain]
                assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))
                assert all(r[3] == DEVICES * PER_DEVICE for r in rows)
            counts = dict(conn.execute(
                "SELECT device, SUM(n) FROM telemetry_chunks GROUP BY device").fetchall())
            expected = BATCHES * PER_DEVICE
            assert counts == {f"gw-{g}-d{d}": expected
                              for g in range(GATEWAYS) for d in range(DEVICES)}
            devices = dict(conn.execute("SELECT id, records FROM devices").fetchall())
            assert set(devices.values()) == {expected}
            seqs = conn.execute(
                "SELECT COUNT(*) FROM telemetry_chunks WHERE seq_hi > %s", (expected,)).fetchone()
            assert seqs == (0,)
    finally:
        code = cloud.stop(timeout=30)
    assert "Traceback" not in cloud.log(), cloud.tail(80)
    assert code is not None
    with psycopg.connect(pg_url) as conn:  # every worker's pool was released on shutdown
        left = conn.execute("SELECT COUNT(*) FROM pg_stat_activity"
                            " WHERE application_name LIKE 'fleetloop-cloud-%%'").fetchone()
        assert left == (0,)


def test_several_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cloud_cli, ["serve", "--home", str(tmp_path), "--dev",
                                            "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers above 1 needs PostgreSQL" in result.output
