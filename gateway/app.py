"""Composition root: build the parts, wire them with narrow callables, run, stop in order.

Threads, not asyncio: paho-mqtt, sqlite3 and httpx are used in their blocking forms, and each
part is one small loop (`run(stop)`) a Worker supervises. Parts never hold a reference to "the
gateway"; they meet through the Store and the callables passed here.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from gateway import procs
from gateway.backoff import Backoff
from gateway.batch import Batcher
from gateway.broker import Broker
from gateway.broker_config import BrokerConfig, connect_host, current_user, find_mosquitto
from gateway.downlink import Downlink
from gateway.hint import HintPublisher
from gateway.ingest import Ingest, MqttParams
from gateway.keys import GatewayKeys
from gateway.revocation import Revocations
from gateway.settings import Settings
from gateway.status import RunInfo, StatusServer
from gateway.store import Store
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
                    Backoff(s.retry_min_s, s.retry_max_s), batch_key, s.http_timeout_s)
    revocations = Revocations(s.cloud_url, s.token_path, keys.ca_cert, broker.config.crl_path,
                              broker.restart, s.revocation_poll_s, s.http_timeout_s)
    batcher = Batcher(store, s.gateway_id, batch_key, s.batch_max_records,
                      s.batch_interval_s, on_sealed=uplink.wake)
    ingest = Ingest(store, MqttParams(
        host=connect_host(s.mqtt_host),
        port=s.mqtt_port, client_id=s.gateway_id, ca_cert=keys.ca_cert, cert=keys.mqtt_cert,
        key=keys.mqtt_key,
    ), s.commit_max, s.commit_window_s, on_stored=batcher.notify,
        revoked=revocations.is_revoked)
    downlink = Downlink(store, s.cloud_url, s.token_path, ingest.publish, s.config_poll_s,
                        s.http_timeout_s)
    hint = HintPublisher(ingest.publish, ingest.registered_devices, ingest.connection,
                         s.min_reconnect_ms, s.reconnect_rate, s.hint_interval_s)
    return Parts(s, store, broker, ingest, batcher, uplink, downlink, hint, revocations)


def collect(p: Parts, started: float, workers: dict[str, Worker]) -> dict[str, Any]:
    online, seen = p.ingest.devices()
    st = p.store.stats()
    return {
        "gateway": p.settings.gateway_id,
        "pid": os.getpid(),
        "uptime_s": round(time.time() - started, 1),
        "broker": p.broker.status().to_obj(),
        "devices": {"online": online, "known": len(seen)},
        "ingest": p.ingest.status(),
        "inbox": st.inbox,
        "states_waiting": st.states,
        "spool": {"batches": st.spool_batches, "records": st.spool_records,
                  "head_seq": st.head.seq, "head_digest": st.head.digest,
                  "dead_letters": st.dead_letters,
                  "latest_dead_letters": [asdict(d) for d in st.latest_dead_letters]},
        "uplink": p.uplink.status(),
        "downlink": p.downlink.status(),
        "hint": p.hint.status(),
        "revocations": p.revocations.status(),
        "vitals": {"total": st.devices_with_vitals,
                   "devices": [v.to_obj() for v in p.store.latest_vitals(VITALS_SHOWN)]},
        "batches_sealed": p.batcher.sealed_batches,
        "worker_restarts": {name: w.restarts for name, w in workers.items()},
    }


def run(s: Settings, stop: threading.Event | None = None) -> None:
    """Run the gateway until `stop` is set or SIGTERM/SIGINT arrives (handled when called from
    the main thread)."""
    stop = stop or threading.Event()
    restore = _on_signals(stop) if threading.current_thread() is threading.main_thread() else {}
    try:
        _run(s, stop)
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)


def _run(s: Settings, stop: threading.Event) -> None:
    # Mosquitto holds a socket per device: the default 1,024 open files stops a site at ~1,000.
    procs.raise_open_files()
    p = build(s)
    started = time.time()
    workers: dict[str, Worker] = {}
    status = StatusServer(s.status_port, lambda: collect(p, started, dict(workers)))
    try:
        p.store.open()
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
            ))
        for worker in workers.values():
            worker.start()
        RunInfo(os.getpid(), s.mqtt_port, status.url).write(s.run_file)
        log.info("gateway %s running: mqtt %s:%d, status %s, cloud %s", s.gateway_id,
                 s.mqtt_host, s.mqtt_port, status.url, s.cloud_url)
        stop.wait()
        log.info("stopping")
    finally:
        _shutdown(p, workers, status)


def _shutdown(p: Parts, workers: dict[str, Worker], status: StatusServer) -> None:
    """Stop taking data, commit and ack what arrived, seal it, stop the broker last."""
    for name in ("revocations", "hint", "downlink", "ingest"):
        if name in workers:
            workers[name].stop()
    p.ingest.stop()
    if "batcher" in workers:
        workers["batcher"].stop()
        p.batcher.flush()
    for name in ("uplink", "broker-watch"):
        if name in workers:
            workers[name].stop()
    status.stop()
    p.broker.stop()
    p.store.close()
    try:
        if RunInfo.read(p.settings.run_file).pid == os.getpid():
            p.settings.run_file.unlink()
    except (OSError, ValueError, KeyError):
        pass
    log.info("stopped")


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous
