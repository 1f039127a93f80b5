"""Composition root: build the parts, wire them with narrow callables, run, stop in order.

Threads, not asyncio: paho-mqtt, sqlite3 and httpx are used in their blocking forms, and each
part is one small loop (`run(stop)`) a Worker supervises. Parts never hold a reference to "the
gateway"; they meet through the Store and the callables passed here.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from gateway import logfile, procs, tech_credential
from gateway.aggregate import Aggregator
from gateway.aggregate_feed import AggregationFeed
from gateway.backoff import Backoff
from gateway.batch import Batcher
from gateway.broker import Broker
from gateway.broker_config import BrokerConfig, connect_host, current_user, find_mosquitto
from gateway.disk import DiskGuard, rewrite_in_place
from gateway.downlink import Downlink
from gateway.errors import GatewayError, KeyFileError
from gateway.hint import HintPublisher
from gateway.ingest import Ingest, MqttParams
from gateway.keys import GatewayKeys
from gateway.longpoll import LongPoll
from gateway.ota_cache import BundleCache
from gateway.ota_cloud import UpdateCloud
from gateway.ota_records import OtaRecords
from gateway.ota_serve import ChunkServer
from gateway.quarantine import Quarantine
from gateway.revocation import Revocations
from gateway.settings import Settings
from gateway.spool_budget import Budget, SpoolBudget
from gateway.status import RunInfo, StatusServer, version
from gateway.store import Store
from gateway.tech_identity import TechIdentity
from gateway.updates import Updates
from gateway.uplink import Uplink
from gateway.worker import Worker

log = logging.getLogger("fleetloop.gateway")

VITALS_SHOWN = 200  # devices whose latest vitals the status shows (the table keeps them all)


@dataclass(frozen=True)
class Parts:
    settings: Settings
    store: Store
    broker: Broker
    ingest: Ingest
    batcher: Batcher
    uplink: Uplink
    downlink: Downlink
    hint: HintPublisher
    revocations: Revocations
    cache: BundleCache
    updates: Updates
    chunks: ChunkServer
    disk: DiskGuard
    budget: SpoolBudget
    quarantine: Quarantine
    aggregator: Aggregator
    aggregation: AggregationFeed


def build(s: Settings) -> Parts:
    keys = GatewayKeys.under(s.home, s.gateway_id)
    keys.check()
    store = Store(s.db_path)
    batch_key = keys.load_batch_key()
    broker = Broker(BrokerConfig(
        directory=s.broker_dir, bind=s.mqtt_host, port=s.mqtt_port, keys=keys,
        gateway_id=s.gateway_id, user=current_user(), max_inflight=s.broker_max_inflight,
        max_queued_bytes=s.broker_max_queued_bytes, autosave_s=s.broker_autosave_s,
        observers=s.observers,
    ), find_mosquitto(s.mosquitto))
    uplink = Uplink(store, s.gateway_id, s.cloud_url, s.token_path,
                    Backoff(s.retry_min_s, s.retry_max_s), batch_key, s.http_timeout_s,
                    probe_s=s.probe_s)
    disk = DiskGuard(s.gateway_dir, s.disk_min_free_bytes)
    budget = SpoolBudget(store, s.gateway_id, batch_key,
                         Budget(s.spool_max_bytes, s.spool_max_age_s), on_dropped=uplink.wake)
    quarantine = Quarantine(store, s.quarantine_max_rows, s.quarantine_device_rows,
                            s.quarantine_rate)
    revocations = Revocations(s.cloud_url, s.token_path, keys.ca_cert, broker.config.crl_path,
                              broker.restart, s.revocation_poll_s, s.http_timeout_s,
                              LongPoll(s.cloud_url, s.token_path, s.long_poll_s,
                                       s.http_timeout_s))
    aggregator = Aggregator(store, s.aggregate_policy, s.aggregate_grace_s,
                            s.aggregate_local_days)
    batcher = Batcher(store, s.gateway_id, batch_key, s.batch_max_records,
                      s.batch_interval_s, on_sealed=uplink.wake, aggregator=aggregator)
    records = OtaRecords(store)
    cache = BundleCache(s.updates_dir, s.ota_cache_bytes, s.release_pub_path, records,
                        s.ota_retry_min_s, s.ota_retry_max_s)
    updates = Updates(records, cache, UpdateCloud(s.cloud_url, s.token_path, s.http_timeout_s),
                      lambda t, data, retain, timeout: ingest.publish(t, data, retain, timeout),
                      s.ota_poll_s,
                      long_poll=LongPoll(s.cloud_url, s.token_path, s.long_poll_s,
                                         s.http_timeout_s),
                      safety_s=s.ota_safety_s)
    # Chunks leave on the ingest's own MQTT session: the broker lets one connection per
    # certificate CN, and the gateway has one certificate.
    chunks = ChunkServer(lambda topic, payload: ingest.send(topic, payload), updates.serving,
                         s.ota_concurrent, s.ota_fetch_rate, revocations.is_revoked)
    ingest = Ingest(store, MqttParams(
        host=connect_host(s.mqtt_host),
        port=s.mqtt_port, client_id=s.gateway_id, ca_cert=keys.ca_cert, cert=keys.mqtt_cert,
        key=keys.mqtt_key,
    ), s.commit_max, s.commit_window_s, on_stored=batcher.notify,
        revoked=revocations.is_revoked, on_fetch=chunks.submit,
        low_space=disk.low_space, on_write=disk.wrote, on_refused=quarantine.add)
    downlink = Downlink(store, s.cloud_url, s.token_path, ingest.publish, s.config_poll_s,
                        s.http_timeout_s,
                        long_poll=LongPoll(s.cloud_url, s.token_path, s.long_poll_s,
                                           s.http_timeout_s))
    hint = HintPublisher(ingest.publish, ingest.registered_devices, ingest.connection,
                         s.min_reconnect_ms, s.reconnect_rate, s.hint_interval_s)
    aggregation = AggregationFeed(aggregator, s.cloud_url, s.token_path, s.aggregate_poll_s,
                                  s.http_timeout_s)
    return Parts(s, store, broker, ingest, batcher, uplink, downlink, hint, revocations, cache,
                 updates, chunks, disk, budget, quarantine,
                 aggregator, aggregation)


def collect(p: Parts, started: float, workers: dict[str, Worker]) -> dict[str, Any]:
    online, seen = p.ingest.devices()
    st = p.store.stats()
    paused = p.disk.paused_reason
    return {
        "gateway": p.settings.gateway_id,
        "pid": os.getpid(),
        "version": version(),
        "uptime_s": round(time.time() - started, 1),
        "broker": p.broker.status().to_obj(),
        "devices": {"online": online, "known": len(seen)},
        "ingest": {**p.ingest.status(), "acking": paused is None, "paused_reason": paused},
        "inbox": st.inbox,
        "states_waiting": st.states,
        "spool": {"batches": st.spool_batches, "records": st.spool_records,
                  "head_seq": st.head.seq, "head_digest": st.head.digest,
                  "dead_letters": st.dead_letters,
                  "latest_dead_letters": [asdict(d) for d in st.latest_dead_letters],
                  "bytes": st.spool_bytes,
                  "oldest_age_s": (None if st.spool_oldest_ms is None else
                                   round(max(0.0, time.time() - st.spool_oldest_ms / 1000), 1)),
                  "budget_bytes": p.budget.budget.max_bytes,
                  "budget_age_s": p.budget.budget.max_age_s,
                  "dropped_batches": st.dropped_batches, "dropped_records": st.dropped_records},
        "disk": p.disk.status(),
        "quarantine": {"total": st.quarantine_total + p.quarantine.status()["unflushed"],
                       "kept": st.quarantine_kept,
                       "latest": [q.to_obj() for q in st.latest_quarantine]},
        "uplink": p.uplink.status(),
        "downlink": p.downlink.status(),
        "hint": p.hint.status(),
        "revocations": p.revocations.status(),
        "updates": {**p.updates.status(), "cache": p.cache.status(),
                    "serving": p.chunks.status()},
        "vitals": {"total": st.devices_with_vitals,
                   "devices": [v.to_obj() for v in p.store.latest_vitals(VITALS_SHOWN)]},
        "batches_sealed": p.batcher.sealed_batches,
        "aggregation": {**p.aggregator.status(), "feed": p.aggregation.status()},
        "worker_restarts": {name: w.restarts for name, w in workers.items()},
    }


def run(s: Settings, stop: threading.Event | None = None) -> None:
    """Run the gateway until `stop` is set or SIGTERM/SIGINT arrives (handled when called from
    the main thread)."""
    stop = stop or threading.Event()
    restore = _on_signals(stop) if threading.current_thread() is threading.main_thread() else {}
    try:
        with logfile.attached(logfile.path(s.gateway_dir)):
            try:
                _run(s, stop)
            except Exception as exc:
                # One line in the gateway's own log says why it stopped (diag reads it).
                log.error("gateway stopped on an error: %s", exc)
                raise
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)


def _run(s: Settings, stop: threading.Event) -> None:
    # Mosquitto holds a socket per device: the default 1,024 open files stops a site at ~1,000.
    procs.raise_open_files()
    p = build(s)
    started = time.time()
    workers: dict[str, Worker] = {}
    # The technician's local credential (status endpoint) and MQTT identity (gateway ping).
    try:
        token = tech_credential.ensure(tech_credential.token_path(s.gateway_dir))
    except GatewayError as exc:  # a full disk at the very first start: run on, fail closed
        log.error("%s: the status endpoint refuses every request until a restart can write it",
                  exc)
        token = secrets.token_urlsafe(tech_credential.TOKEN_BYTES)
    try:  # optional: a gateway without it runs, only `gateway ping` cannot
        if not TechIdentity.under(s.home, s.gateway_id).ensure():
            log.info("no technician MQTT identity: the device CA's key is not on this box "
                     "(`fleetloop gateway ping` needs one)")
    except KeyFileError as exc:
        log.warning("%s", exc)
    status = StatusServer(s.status_port, lambda: collect(p, started, dict(workers)), token)
    try:
        p.store.open()
        p.aggregator.open()
        p.cache.open()
        status.start()
        p.broker.start()
        p.ingest.start()
        workers.update(
            (w.name, w) for w in (
                Worker("broker-watch", p.broker.run),
                Worker("ingest", p.ingest.run, on_crash=p.ingest.resync),
                Worker("batcher", p.batcher.run, wake=p.batcher.wake),
                Worker("uplink", p.uplink.run, wake=p.uplink.wake),
                Worker("downlink", p.downlink.run),
                Worker("hint", p.hint.run),
                Worker("revocations", p.revocations.run),
                Worker("updates", p.updates.run),
                Worker("chunks", p.chunks.run),
                Worker("disk", p.disk.run),
                Worker("spool-budget", p.budget.run),
                Worker("quarantine", p.quarantine.run),
                Worker("aggregation", p.aggregation.run),
            ))
        for worker in workers.values():
            worker.start()
        _write_run_info(RunInfo(os.getpid(), s.mqtt_port, status.url), s)
        log.info("gateway %s running: mqtt %s:%d, status %s, cloud %s", s.gateway_id,
                 s.mqtt_host, s.mqtt_port, status.url, s.cloud_url)
        stop.wait()
        log.info("stopping")
    finally:
        _shutdown(p, workers, status)


def _shutdown(p: Parts, workers: dict[str, Worker], status: StatusServer) -> None:
    """Stop taking data, commit and ack what arrived, seal it, stop the broker last."""
    for name in ("updates", "chunks", "revocations", "hint", "downlink", "aggregation",
                 "spool-budget", "ingest", "disk"):
        if name in workers:
            workers[name].stop()
    p.ingest.stop()
    if "batcher" in workers:
        workers["batcher"].stop()
        p.batcher.flush()
    for name in ("quarantine", "uplink", "broker-watch"):
        if name in workers:
            workers[name].stop()
    status.stop()
    p.broker.stop()
    p.aggregator.close()
    p.store.close()
    try:
        if RunInfo.read(p.settings.run_file).pid == os.getpid():
            p.settings.run_file.unlink()
    except (OSError, ValueError, KeyError):
        pass
    log.info("stopped")


def _write_run_info(info: RunInfo, s: Settings) -> None:
    """run.json tells `diag` where the running gateway is. On a full disk the usual write (a
    temporary file renamed) has no block to go to: the gateway then rewrites the old file in
    place, and runs on (devices must be able to connect) even when that fails too."""
    try:
        info.write(s.run_file)
    except OSError as exc:
        if not rewrite_in_place(s.run_file, json.dumps(asdict(info))):
            log.error("cannot write %s (%s): diag will not find this gateway", s.run_file, exc)


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous
