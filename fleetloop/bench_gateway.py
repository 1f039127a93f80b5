"""`fleetloop bench gateway`: the gateway's ingest rate next to a bare MQTT client's, in one run.

One home, one broker configuration: the Mosquitto the gateway writes and starts (mTLS, the
per-device ACL, its in-flight and queue settings) on one port. Four stand-in devices
(`mosquitto_pub`, the C client, with real device certificates) publish pre-generated, tagged
version 2 records at QoS 1, 50,000 each, read from files so all four start at once:

1. bare: that broker started alone (gateway.app builds it from the gateway's settings) and a
   paho subscriber with an observer's certificate (QoS 1, auto-acked, counting only); the
   figure is messages / (last one counted - publishers started);
2. gateway: `fleetloop gateway run` (QoS 1, deduplicated, durably committed before each
   PUBACK and ack, sealed into signed batches; no cloud listens, so its spool only grows); the
   figure is records / (every device acked to its last seq - publishers started), the acks
   read by a second observer;
3. frames: the same gateway, the same number of records in frames (protocol.frame) of
   `frame_records` each, sent by small paho publishers (mosquitto_pub sends one line per
   message, and a frame holds several lines).

The ratio gateway / bare is what carries over between machines: both share the same two cores
with the publishers and the broker.
"""

from __future__ import annotations

import json
import secrets
import shutil
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from fleetloop.bench import machine
from fleetloop.stack import Stack, write_secret
from protocol import ack, frame, record, tag
from protocol.bounds import MAX_FRAME_RECORDS

BARE = "bench-bare"  # observer identities: read-only at the broker
WATCH = "bench-watch"
MAX_PER_DEVICE = 60000  # mosquitto_pub numbers QoS 1 messages with 16 bits
_LEN = struct.Struct(">I")


def signed_records(device_id: str, key: bytes, count: int) -> list[bytes]:
    """`count` version 2 records of a new incarnation, tagged with the device's record key."""
    mac = tag.Hmac(key)
    inc = secrets.randbelow(record.MAX_INCARNATION) + 1
    return [record.encode(device_id, inc, seq, 1732345678000 + seq,
                          {"cadence": 80, "heart_rate": 120, "power": seq % 300, "speed": 31.5},
                          mac) for seq in range(1, count + 1)]


class Observer:
    """A paho subscriber with an observer's certificate on the gateway's broker (QoS 1, the
    library's own PUBACKs): counts telemetry messages, or keeps each device's highest ack."""

    def __init__(self, stack: Stack, identity: str, topic: str) -> None:
        self.count = 0
        self.last_at = 0.0
        self.acked: dict[str, int] = {}
        self._subscribed = threading.Event()
        self._topic = topic
        self.client = stack.mqtt_client(identity)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self.client.on_message = self._count if topic.endswith("telemetry") else self._ack
        self.client.connect("localhost", stack.mqtt_port)
        self.client.loop_start()
        if not self._subscribed.wait(15):
            self.close()
            raise RuntimeError(f"{identity} could not subscribe to {topic}")

    def _count(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.count += 1  # the counting loop: nothing else
        self.last_at = time.monotonic()

    def _ack(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            _, seq = ack.decode(msg.payload)
        except ValueError:
            return
        device = msg.topic.split("/")[1]
        if seq > self.acked.get(device, 0):
            self.acked[device] = seq
            self.last_at = time.monotonic()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _mosquitto_pub(stack: Stack, device_id: str, lines: Path) -> subprocess.Popen[bytes]:
    publisher = shutil.which("mosquitto_pub")
    if publisher is None:
        raise FileNotFoundError("mosquitto_pub not found: install the mosquitto-clients package")
    keys = stack.home / "keys"
    argv = [publisher, "--cafile", str(keys / "ca.crt.pem"),
            "--cert", str(keys / "devices" / device_id / "cert.pem"),
            "--key", str(keys / "devices" / device_id / "key.pem"),
            "-h", "localhost", "-p", str(stack.mqtt_port), "-i", device_id,
            "-t", f"fleet/{device_id}/telemetry", "-q", "1", "-M", "100", "-l"]
    with lines.open("rb") as stdin:
        return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL)


def _frame_pub(stack: Stack, device_id: str, messages: Path) -> subprocess.Popen[bytes]:
    keys = stack.home / "keys" / "devices" / device_id
    argv = [sys.executable, "-m", "fleetloop.bench_gateway", str(stack.mqtt_port),
            str(stack.home / "keys" / "ca.crt.pem"), str(keys / "cert.pem"), str(keys / "key.pem"),
            device_id, str(messages)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def publish_file(port: int, ca: str, cert: str, key: str, device_id: str, path: str) -> None:
    """A stand-in device for frames: QoS 1 publishes of length-prefixed messages from `path`
    (runs in its own process: `python -m fleetloop.bench_gateway PORT CA CERT KEY ID FILE`)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id,
                         protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
    client.max_inflight_messages_set(100)
    client.connect("localhost", port)
    client.loop_start()
    data = Path(path).read_bytes()
    topic = f"fleet/{device_id}/telemetry"
    infos = []
    at = 0
    while at < len(data):
        (n,) = _LEN.unpack_from(data, at)
        infos.append(client.publish(topic, data[at + 4:at + 4 + n], qos=1))
        at += 4 + n
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _run(stack: Stack, start: Callable[[str], subprocess.Popen[bytes]], ids: list[str],
         done: Callable[[], bool], finished_at: Callable[[], float], timeout: float) -> float:
    """Start one publisher per device at once; the seconds from then until `done`."""
    t0 = time.monotonic()
    procs = [start(d) for d in ids]
    try:
        _wait(done, timeout, "every record")
    finally:
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return finished_at() - t0


def bench_gateway(devices: int = 4, per_device: int = 50000,
                  frame_records: int = MAX_FRAME_RECORDS, home: Path | None = None,
                  log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    if not 0 < per_device <= MAX_PER_DEVICE:
        raise ValueError(f"per_device must be 1..{MAX_PER_DEVICE}")
    if not 1 <= frame_records <= MAX_FRAME_RECORDS:
        raise ValueError(f"frame_records must be 1..{MAX_FRAME_RECORDS}")
    from gateway import app as gateway_app
    from gateway.settings import Settings

    total = devices * per_device
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-gw-") as tmp:
        root = home or Path(tmp)
        stack = Stack(home=root, observers=[BARE, WATCH])
        ids = [f"bench-{i}" for i in range(devices)]
        stack.keygen([*ids, BARE, WATCH])
        write_secret(stack.token_file, "no-cloud-listens")  # the cloud is not running
        data = root / "bench-data"
        data.mkdir()
        log(f"signing {total} records and {total} more for frames")
        record_keys = {d: (root / "keys" / "devices" / d / "record.key").read_bytes() for d in ids}
        for d in ids:
            recs = signed_records(d, record_keys[d], per_device)
            (data / f"{d}.lines").write_bytes(b"\n".join(recs) + b"\n")
            framed = signed_records(d, record_keys[d], per_device)
            with (data / f"{d}.frames").open("wb") as f:
                for i in range(0, len(framed), frame_records):
                    payload = frame.encode(framed[i:i + frame_records])
                    f.write(_LEN.pack(len(payload)) + payload)
        timeout = 120 + total / 500
        settings = Settings.build(env={}, home=root, gateway_id=stack.gateway_id,
                                  mqtt_port=stack.mqtt_port, status_port=stack.status_port,
                                  cloud_url=stack.cloud_url, token_file=stack.token_file,
                                  observers=(BARE, WATCH))
        broker = gateway_app.build(settings).broker
        log("bare paho subscriber")
        broker.start()
        try:
            bare = Observer(stack, BARE, "fleet/+/telemetry")
            try:
                bare_s = _run(stack, lambda d: _mosquitto_pub(stack, d, data / f"{d}.lines"), ids,
                              lambda: bare.count >= total, lambda: bare.last_at, timeout)
                counted = bare.count
            finally:
                bare.close()
        finally:
            broker.stop()
        try:
            log("gateway")
            stack.start_gateway()
            watch = Observer(stack, WATCH, "fleet/+/ack")
            try:
                def acked(n: int) -> Callable[[], bool]:
                    return lambda: all(watch.acked.get(d, 0) >= n for d in ids)

                gw_s = _run(stack, lambda d: _mosquitto_pub(stack, d, data / f"{d}.lines"), ids,
                            acked(per_device), lambda: watch.last_at, timeout)
                before = (stack.gateway_status() or {}).get("ingest", {})
                watch.acked.clear()  # the frames are a new incarnation: acks start again
                log(f"gateway, frames of {frame_records} records")
                frames_s = _run(stack, lambda d: _frame_pub(stack, d, data / f"{d}.frames"), ids,
                                acked(per_device), lambda: watch.last_at, timeout)
            finally:
                watch.close()
            status = stack.gateway_status() or {}
        finally:
            stack.stop()
    ingest = status.get("ingest", {})
    bare_rate = round(counted / bare_s)
    gw_rate = round(total / gw_s)
    return {
        "devices": devices, "records_per_device": per_device, "records": total,
        "bare_paho_msgs_per_s": bare_rate, "bare_s": round(bare_s, 2),
        "gateway_records_per_s": gw_rate, "gateway_s": round(gw_s, 2),
        "ratio": round(gw_rate / bare_rate, 2),
        "frame_records": frame_records,
        "gateway_frames_records_per_s": round(total / frames_s), "frames_s": round(frames_s, 2),
        "frames_ratio": round(total / frames_s / bare_rate, 2),
        "stored": ingest.get("records"), "stored_single": before.get("records"),
        "duplicates": ingest.get("duplicates"), "rejected": ingest.get("rejected"),
        "exactly_once": ingest.get("records") == 2 * total and not ingest.get("rejected"),
        "spool_records": status.get("spool", {}).get("records"),
        "target_ratio": 0.75,
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(),
    }


def _events(proc: subprocess.Popen[bytes], seen: list[tuple[float, dict[str, Any]]]) -> None:
    """Read the device's JSON event lines into `seen` as (arrival time, event) until it ends."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"{"):
            try:
                seen.append((time.monotonic(), json.loads(line)))
            except ValueError:
                continue


def bench_drain(records: int = 3600, profile: str = "bike",
                heap: str = "64K") -> dict[str, Any]:
    """A real MicroPython device that sampled `records` while its gateway was away (3,600 fill
    its buffer: an hour of a bike at one record a second), then the gateway comes: seconds
    from the device's connect to its "drained" event (every record acked)."""
    from fwtool import keys
    from fwtool.provision import provision

    from fleetloop.device_consent import request
    from fleetloop.device_runner import device_command
    from gateway import app as gateway_app
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-drain-") as tmp:
        root = Path(tmp)
        device_id = f"{profile}-drain"
        keys.generate(root, ["gw-1"], [device_id])
        stack = Stack(home=root)
        write_secret(stack.token_file, "no-cloud-listens")
        image = provision(root, device_id, profile, "localhost", stack.mqtt_port)
        request(root, device_id, "personal")  # the owner shares the bike's data
        argv, env, cwd = device_command(image, "micropython", records=records, heap=heap,
                                        interval_ms=2)
        seen: list[tuple[float, dict[str, Any]]] = []
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        reader = threading.Thread(target=_events, args=(proc, seen), daemon=True)
        reader.start()
        stop = threading.Event()
        gw = threading.Thread(target=gateway_app.run, args=(Settings.build(
            env={}, home=root, gateway_id="gw-1", mqtt_port=stack.mqtt_port,
            status_port=stack.status_port, cloud_url=stack.cloud_url,
            token_file=stack.token_file), stop), daemon=True)

        def at(kind: str, **match: Any) -> float | None:
            return next((t for t, e in list(seen) if e.get("event") == kind
                         and all(e.get(k) == v for k, v in match.items())), None)

        try:
            _wait(lambda: at("produced", seq=records) is not None, 120 + records / 50,
                  "the backlog")
            gw.start()
            _wait(lambda: at("drained", acked=records) is not None, 300, "the drain")
            connected = at("connected")
            drained = at("drained", acked=records)
            assert connected is not None and drained is not None
        finally:
            stop.set()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if gw.is_alive():
                gw.join(30)
    return {"profile": profile, "records": records, "heap": heap,
            "drain_s": round(drained - connected, 2),
            "records_per_s": round(records / (drained - connected))}


def gateway_table(r: dict[str, Any]) -> str:
    """The docs table (between the bench gateway markers in docs/benchmarks.md)."""
    rows = [
        "| run | work per message | rate | of bare paho |",
        "|---|---|---|---|",
        f"| bare paho (baseline) | count | {r['bare_paho_msgs_per_s']:,} msg/s | 1.00 |",
        f"| gateway, single records | decode, dedupe, commit (WAL, FULL), PUBACK, ack, sign "
        f"| {r['gateway_records_per_s']:,} records/s | {r['ratio']:.2f} |",
        f"| gateway, frames of {r['frame_records']} | the same per record "
        f"| {r['gateway_frames_records_per_s']:,} records/s | {r['frames_ratio']:.2f} |",
        *([f"| a bike's offline backlog, real MicroPython | {r['drain']['records']:,} records "
           f"(its full buffer) acked {r['drain']['drain_s']} s after it connected "
           f"| {r['drain']['records_per_s']:,} records/s | |"] if r.get("drain") else []),
        "",
        f"{r['devices']} × {r['records_per_device']:,} records per run, QoS 1 over mTLS, "
        f"stored exactly once: {'yes' if r['exactly_once'] else 'NO'}; target ratio "
        f"{r['target_ratio']}. Measured {r['measured']} on {r['machine']['cores']} cores "
        f"({r['machine']['cpu']}, Python {r['machine']['python']}).",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    publish_file(int(sys.argv[1]), *sys.argv[2:7])
