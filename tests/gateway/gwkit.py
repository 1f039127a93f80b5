"""Helpers shared by the gateway tests (a unique module name in the whole tree, put on sys.path
by conftest.py): keys from fwtool, free ports, stand-in devices (paho with a device
certificate), a fake cloud (a real HTTP server that verifies batches with
protocol.batch.open_sealed and the chain), a whole gateway in-process or as a child process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

from fleetloop.procs import free_port
from gateway.batch import Batcher
from gateway.keys import GatewayKeys
from gateway.seqs import SeqTracker
from gateway.settings import Settings
from gateway.store import InboxRecord, Store, TrackerChange
from protocol import ack as ack_codec
from protocol import batch as batch_codec
from protocol import record as record_codec
from protocol import tag

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "gw-1"
DEVICES = ("bike-1", "bike-2", "mirror-1", "engine-1")
TOKEN = "test-gateway-token"


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

# -- keys and homes ------------------------------------------------------------------------------

INCARNATION = 1


def record_key(home: Path, device: str) -> bytes:
    """The device's record key from the home's factory keys (a fixed test key if there is none:
    the gateway never checks tags, only the cloud does)."""
    path = home / "keys" / "devices" / device / "record.key"
    if path.exists():
        return path.read_bytes()
    return hashlib.sha256(b"fleetloop test record key " + device.encode()).digest()


def signed_record(home: Path, device: str, seq: int, t: int, metrics: dict[str, Any],
                  incarnation: int = INCARNATION) -> bytes:
    return record_codec.encode(device, incarnation, seq, t, metrics,
                               tag.Hmac(record_key(home, device)))


def spool_records(home: Path, device: str, count: int, batch_size: int = 10) -> Store:
    """A gateway store whose spool holds `count` records of `device` (seq 1..count), sealed in
    batches of `batch_size` with the gateway's real batch key, as the ingest + batcher leave it."""
    store = Store(home / "gateways" / GATEWAY / "gateway.db")
    store.open()
    before, after = SeqTracker(), SeqTracker()
    rows = []
    for s in range(1, count + 1):
        after.accept(s)
        rows.append(InboxRecord(device, s, signed_record(home, device, s, s, {"n": s}), 0))
    store.commit_ingest(rows, [], [TrackerChange((device, INCARNATION), before, after, count, 0)])
    Batcher(store, GATEWAY, GatewayKeys.under(home, GATEWAY).load_batch_key(), batch_size,
            1.0).flush()
    return store


def batch_public_key(home: Path) -> Ed25519PublicKey:
    raw = (home / "keys" / "gateways" / GATEWAY / "batch.pub").read_bytes()
    return Ed25519PublicKey.from_public_bytes(raw)

# -- stand-in devices ----------------------------------------------------------------------------

@dataclass
class Device:
    """A paho client holding one device's certificate: publishes records, collects acks."""

    device_id: str
    client: mqtt.Client
    mac: tag.Hmac
    incarnation: int = INCARNATION
    acks: list[int] = field(default_factory=list)  # acks of its own incarnation
    configs: list[bytes] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def acked(self) -> int:
        return max(self.acks, default=-1)

    def record(self, seq: int, **metrics: Any) -> bytes:
        return record_codec.encode(self.device_id, self.incarnation, seq, 1732345678000 + seq,
                                   metrics or {"power": 200 + seq % 50}, self.mac)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(10)

    def send(self, seq: int, **metrics: Any) -> None:
        self.publish(f"fleet/{self.device_id}/telemetry", self.record(seq, **metrics))

def connect_device(home: Path, device_id: str, port: int, subscribe: list[str] | None = None,
                   cert_of: str | None = None, clean: bool = True) -> Device:
    """Connect as `device_id`, presenting the certificate of `cert_of` (default: its own)."""
    ident = cert_of or device_id
    keys = home / "keys"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, clean_session=clean,
                         protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(keys / "ca.crt.pem"),
                   certfile=str(keys / "devices" / ident / "cert.pem"),
                   keyfile=str(keys / "devices" / ident / "key.pem"),
                   cert_reqs=ssl.CERT_REQUIRED)
    client.max_inflight_messages_set(100)
    dev = Device(device_id, client, tag.Hmac(record_key(home, device_id)))
    topics = subscribe if subscribe is not None else [f"fleet/{device_id}/ack",
                                                      f"fleet/{device_id}/config"]

    pending: set[int] = set()

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        if not topics:
            dev.connected.set()
        for t in topics:
            pending.add(c.subscribe(t, qos=1)[1])

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, reasons: Any, props: Any) -> None:
        # Ready only once the broker confirmed the subscriptions: an ack published before
        # that would be lost to this stand-in device (a real one re-sends and hears again).
        pending.discard(mid)
        if not pending:
            dev.connected.set()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        dev.received.append((msg.topic, msg.payload))
        if msg.topic.endswith("/ack"):
            try:
                inc, seq = ack_codec.decode(msg.payload)
                if inc == dev.incarnation:
                    dev.acks.append(seq)
            except ValueError:
                pass
        elif msg.topic.endswith("/config"):
            dev.configs.append(msg.payload)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("localhost", port, keepalive=30)
    client.loop_start()
    if not dev.connected.wait(10):
        client.loop_stop()
        raise AssertionError(f"{device_id} could not connect to port {port} and subscribe")
    return dev

# -- fake cloud ----------------------------------------------------------------------------------

class FakeCloud:
    """POST /api/v1/ingest verifies signature and chain like the real cloud; `mode` can make it
    fail. GET /api/v1/gateway/configs serves `configs` (list of (revision, device, envelope)).

    The update endpoints stand in for the cloud's own, which are being built at the same time
    as the gateway's side (docs/protocol.md "Updates (OTA)" is the agreement):
    GET /api/v1/gateway/updates serves `update_offers` as {"offers": [...]},
    GET /api/v1/gateway/bundles/{key} the bytes in `bundles` (counted in `bundle_downloads`),
    GET /api/v1/gateway/manifests/{version}?product=P the file 0 in `manifests[(P, version)]`."""

    def __init__(self, public_key: Ed25519PublicKey, token: str = TOKEN) -> None:
        self.public_key = public_key
        self.token = token
        self.port = free_port()
        self.mode = "ok"  # ok | 500 | 409 | 401
        self.refuse_seqs: set[int] = set()  # batch seqs answered 422 (refused for themselves)
        self.gaps: list[batch_codec.Gap] = []
        self.lock = threading.Lock()
        self.batches: list[batch_codec.Batch] = []
        self.head = (0, batch_codec.GENESIS)
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self.duplicate_records = 0
        self.states: list[dict[str, Any]] = []
        self.posts = 0
        self.refusals: list[str] = []
        self.configs: list[tuple[int, str, str]] = []
        self.config_requests: list[int] = []
        self.update_offers: list[Any] = []
        self.bundles: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.bundle_downloads: Counter[str] = Counter()
        self.update_polls = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeCloud:
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code, obj = cloud.ingest(dict(self.headers), body)
                self._send(code, obj)

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                if self.headers.get("Authorization") != f"Bearer {cloud.token}":
                    self._send(401, {"detail": "bad token"})
                    return
                if url.path.startswith("/api/v1/gateway/") and url.path != \
                        "/api/v1/gateway/configs":
                    self._updates(url.path, parse_qs(url.query))
                    return
                if url.path != "/api/v1/gateway/configs":
                    self._send(404, {"detail": "not found"})
                    return
                after = int(parse_qs(url.query).get("after", ["0"])[0])
                with cloud.lock:
                    cloud.config_requests.append(after)
                    items = [c for c in cloud.configs if c[0] > after]
                    rev = max([c[0] for c in cloud.configs], default=after)
                self._send(200, {"revision": max(rev, after), "configs": [
                    {"device": d, "version": r, "envelope": e} for r, d, e in items]})

            def _updates(self, path: str, query: dict[str, list[str]]) -> None:
                name = path.rsplit("/", 1)[1]
                with cloud.lock:
                    if path == "/api/v1/gateway/updates":
                        cloud.update_polls += 1
                        self._send(200, {"offers": cloud.update_offers})
                        return
                    if path.startswith("/api/v1/gateway/bundles/") and name in cloud.bundles:
                        cloud.bundle_downloads[name] += 1
                        self._send_bytes(cloud.bundles[name])
                        return
                    product = query.get("product", [""])[0]
                    if path.startswith("/api/v1/gateway/manifests/") and \
                            (product, name) in cloud.manifests:
                        self._send_bytes(cloud.manifests[(product, name)])
                        return
                self._send(404, {"detail": "not found"})

            def _send(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_bytes(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ingest(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.posts += 1
            if self.mode == "500":
                return 500, {"detail": "cloud is having a bad day"}
            if self.mode == "409":
                return 409, {"detail": "chain conflict (forced)"}
            if headers.get("Authorization") != f"Bearer {self.token}" or self.mode == "401":
                return 401, {"detail": "bad token"}
            if headers.get("Content-Type") == batch_codec.GAP_CONTENT_TYPE:
                return self._gap(headers, body)
            if headers.get("Content-Type") != batch_codec.CONTENT_TYPE:
                return 415, {"detail": "content type"}
            try:
                b, dig = batch_codec.open_sealed(body, headers[batch_codec.HEADER_SIGNATURE],
                                                 self.public_key)
            except (batch_codec.BatchError, KeyError) as exc:
                self.refusals.append(str(exc))
                return 400, {"detail": str(exc)}
            if b.gateway != headers.get(batch_codec.HEADER_GATEWAY):
                return 400, {"detail": "gateway header mismatch"}
            last_seq, last_digest = self.head
            if b.seq == last_seq and dig == last_digest:
                return 200, {"stored": 0, "duplicates": len(b.records), "seq": b.seq}
            if b.seq != last_seq + 1 or b.prev != last_digest:
                self.refusals.append(f"chain: got seq {b.seq} prev {b.prev[:8]}, head {last_seq}")
                return 409, {"detail": "chain conflict"}
            if b.seq in self.refuse_seqs:
                self.refusals.append(f"batch {b.seq} refused (forced)")
                return 422, {"detail": f"batch {b.seq} refused (forced)"}
            stored = 0
            for item in b.records:
                rec, _ = batch_codec.parse_record(item, b.version)
                key = (rec["d"], rec["s"])
                if key in self.records:
                    self.duplicate_records += 1
                else:
                    self.records[key] = rec
                    stored += 1
            self.states.extend(batch_codec.parse_state(st, b.version)[0] for st in b.states)
            self.batches.append(b)
            self.head = (b.seq, dig)
            return 200, {"stored": stored, "duplicates": len(b.records) - stored, "seq": b.seq}

    def _gap(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            gap = batch_codec.open_gap(body, headers[batch_codec.HEADER_SIGNATURE],
                                       self.public_key)
        except (batch_codec.BatchError, KeyError) as exc:
            self.refusals.append(f"gap: {exc}")
            return 400, {"detail": str(exc)}
        if (gap.seq, gap.prev) != (self.head[0] + 1, self.head[1]):
            return 409, {"detail": "gap out of chain"}
        self.gaps.append(gap)
        self.head = (gap.seq, gap.digest)
        return 200, {"stored": 0, "duplicates": 0, "seq": gap.seq}

    def seqs(self, device: str) -> list[int]:
        with self.lock:
            return sorted(s for d, s in self.records if d == device)

# -- a whole gateway -----------------------------------------------------------------------------

@dataclass
class RunningGateway:
    settings: Settings
    stop_event: threading.Event
    thread: threading.Thread
    errors: list[BaseException]

    @property
    def port(self) -> int:
        return self.settings.mqtt_port

    def status(self) -> dict[str, Any]:
        import httpx

        from gateway.tech_credential import header_for

        return dict(httpx.get(self.settings.status_url, timeout=5,
                              headers=header_for(self.settings.gateway_dir)).json())

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)

def gateway_settings(home: Path, cloud_url: str, **kw: Any) -> Settings:
    mqtt_port = status_port = free_port()
    while status_port == mqtt_port:  # two asks for a free port can get the same one
        status_port = free_port()
    values: dict[str, Any] = dict(home=home, gateway_id=GATEWAY, mqtt_port=mqtt_port,
                                  status_port=status_port, cloud_url=cloud_url,
                                  batch_interval_s=0.2, retry_min_s=0.05, retry_max_s=0.3,
                                  config_poll_s=0.2)
    values.update(kw)
    return Settings.build(env={}, **values)

@dataclass
class Child:
    """A child process in its own session, logged to a file, stopped in a finalizer."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with open(self.log_path, "ab") as logf:
            self.popen = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=self.env,
                                          start_new_session=True, cwd=ROOT)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

def gateway_argv(settings: Settings) -> list[str]:
    argv = [sys.executable, "-m", "gateway", "run", "--home", str(settings.home),
            "--id", settings.gateway_id, "--mqtt-port", str(settings.mqtt_port),
            "--status-port", str(settings.status_port), "--cloud", settings.cloud_url,
            "--batch-interval", str(settings.batch_interval_s),
            "--reconnect-rate", str(settings.reconnect_rate)]
    if settings.min_reconnect_ms is not None:
        argv += ["--min-reconnect-ms", str(settings.min_reconnect_ms)]
    return argv

def child_status(settings: Settings) -> dict[str, Any] | None:
    """The status of a gateway (child or not) with the technician's credential; None while it
    does not answer."""
    import httpx

    from gateway.errors import DiagError
    from gateway.tech_credential import header_for

    try:
        return dict(httpx.get(settings.status_url, timeout=2,
                              headers=header_for(settings.gateway_dir)).json())
    except (httpx.HTTPError, ValueError, DiagError):
        return None


def start_child_gateway(start: Callable[..., Child], settings: Settings, log_path: Path) -> Child:
    """`fleetloop gateway run` as a child process (through the `children` fixture's `start`),
    returned once its broker and its MQTT link are up."""
    child = start(gateway_argv(settings), log_path)

    def up() -> bool:
        if not child.alive():
            raise AssertionError(f"gateway exited:\n{child.log()}")
        st = child_status(settings)
        return bool(st and st["broker"]["up"] and st["ingest"]["link"] == "up")

    wait_for(up, 30, "gateway up")
    return child

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
