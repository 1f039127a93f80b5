"""A whole fleetloop on one machine: cloud, gateway and devices as real processes.

The demo and the end-to-end tests build the same stack, so what the tests prove is what a
user sees. Every process is started through the `fleetloop` CLI, exactly as a user types it.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from fleetloop.procs import Process, ProcessError, Supervisor, free_port
from gateway.errors import GatewayError
from gateway.tech_credential import header_for
from protocol import record, tag

CLI = [sys.executable, "-m", "fleetloop"]


def write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)


def read_or_make_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    write_secret(path, value)
    return value


@dataclass
class Stack:
    home: Path
    supervisor: Supervisor = field(default_factory=Supervisor)
    gateway_id: str = "gw-1"
    admin_token: str = ""
    dev: bool = False  # the cloud's dev mode: a dashboard without a token, for the demo
    cloud_port: int = 0
    mqtt_port: int = 0
    status_port: int = 0
    devices: dict[str, Process] = field(default_factory=dict)
    enrolled: set[str] = field(default_factory=set)  # devices this stack enrolled (fw enrol)
    observers: list[str] = field(default_factory=list)  # read-only identities at the broker
    cloud: Process | None = None
    gateway: Process | None = None

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.cloud_port = self.cloud_port or free_port()
        self.mqtt_port = self.mqtt_port or free_port()
        self.status_port = self.status_port or free_port()
        if not self.admin_token:
            self.admin_token = read_or_make_secret(self.home / "cloud" / "admin-token")

    # -- paths and environment -------------------------------------------------------------
    @property
    def cloud_url(self) -> str:
        return f"http://127.0.0.1:{self.cloud_port}"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}/status"

    @property
    def token_file(self) -> Path:
        return self.home / "gateways" / self.gateway_id / "token"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["FLEETLOOP_HOME"] = str(self.home)
        env["FLEETLOOP_ADMIN_TOKEN"] = self.admin_token
        env.pop("FLEETLOOP_DEV", None)
        return env

    def _process(self, name: str, args: list[str]) -> Process:
        log = self.home / "logs" / f"{name}.log"
        return Process(name, [*CLI, *args], log, env=self.env())

    # -- keys -------------------------------------------------------------------------------
    def keygen(self, device_ids: list[str]) -> None:
        from fwtool import keys

        keys.generate(self.home, [self.gateway_id], device_ids)

    # -- cloud ------------------------------------------------------------------------------
    def start_cloud(self) -> Process:
        args = ["cloud", "serve", "--home", str(self.home), "--host", "127.0.0.1",
                "--port", str(self.cloud_port)]
        proc = self._process("cloud", [*args, "--dev"] if self.dev else args)
        self.cloud = self.supervisor.start(proc)
        self.wait_http(f"{self.cloud_url}/healthz", proc)
        return proc

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.cloud_url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )

    def register_gateway(self) -> None:
        """What an operator types: `fleetloop gateway register` with the admin token."""
        out = subprocess.run(
            [*CLI, "gateway", "register", "--home", str(self.home), "--id", self.gateway_id,
             "--cloud", self.cloud_url, "--token-file", str(self.token_file)],
            env=self.env(), capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            raise ProcessError(f"gateway register failed: {out.stdout}{out.stderr}")

    def register_device(self, device_id: str, product: str) -> None:
        """Enrol the device with its record key when keygen made one (the factory's way);
        without a key, register it bare (a device on version 1 firmware)."""
        from fwtool.keys import KeyLayout

        if KeyLayout.of_home(self.home).device_record_key(device_id).is_file():
            self.enrol([(device_id, product)])
            return
        with self.admin() as client:
            resp = client.post("/api/v1/devices", json={"id": device_id, "product": product})
            if resp.status_code not in (200, 201, 409):
                resp.raise_for_status()

    def enrol(self, devices: list[tuple[str, str]]) -> None:
        """What the factory types once per device, `fleetloop fw enrol` with the admin token:
        the cloud gets the device's record key. (device id, product) pairs, run at once; a
        device enrolled before by this stack is skipped."""
        todo = [(d, p) for d, p in dict.fromkeys(devices) if d not in self.enrolled]
        procs = [(d, subprocess.Popen(
            [*CLI, "fw", "enrol", "--home", str(self.home), "--id", d, "--product", p,
             "--cloud", self.cloud_url],
            env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            for d, p in todo]
        failed = []
        for d, proc in procs:
            out, _ = proc.communicate(timeout=60)
            if proc.returncode == 0:
                self.enrolled.add(d)
            else:
                failed.append(f"{d}: {out.strip()}")
        if failed:
            raise ProcessError("fleetloop fw enrol failed: " + "; ".join(failed))

    # -- gateway ----------------------------------------------------------------------------
    def start_gateway(self) -> Process:
        proc = self._process(
            "gateway",
            ["gateway", "run", "--home", str(self.home), "--id", self.gateway_id,
             "--mqtt-port", str(self.mqtt_port), "--status-port", str(self.status_port),
             "--cloud", self.cloud_url, "--token-file", str(self.token_file),
             *(arg for name in self.observers for arg in ("--observer", name))],
        )
        self.gateway = self.supervisor.start(proc)
        def ready() -> bool:
            status = self.gateway_status() or {}
            return bool(status.get("broker", {}).get("up")
                        and status.get("ingest", {}).get("link") == "up")

        self.wait_until(ready, proc, what="the gateway's broker up and its ingest subscribed")
        return proc

    def mqtt_client(self, identity: str) -> mqtt.Client:
        """A paho client (MQTT 3.1.1) holding `identity`'s fleet certificate (a device's, or an
        observer's: both are issued by `fw keygen`), its client id the CN as the broker
        demands; not connected yet: connect it to ("localhost", self.mqtt_port)."""
        keys = self.home / "keys"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity,
                             protocol=mqtt.MQTTv311)
        client.tls_set(ca_certs=str(keys / "ca.crt.pem"),
                       certfile=str(keys / "devices" / identity / "cert.pem"),
                       keyfile=str(keys / "devices" / identity / "key.pem"),
                       cert_reqs=ssl.CERT_REQUIRED)
        return client

    def signed_record(self, device_id: str, seq: int, power: int) -> bytes:
        """A version 2 record of `device_id` (incarnation 1) tagged with its record key from
        the factory's keys: what that device would send, made outside it."""
        key = (self.home / "keys" / "devices" / device_id / "record.key").read_bytes()
        return record.encode(device_id, 1, seq, 1, {"power": power}, tag.Hmac(key))

    def gateway_status(self) -> dict[str, Any] | None:
        try:  # the status endpoint wants the technician's credential (made at the start)
            resp = httpx.get(self.status_url, timeout=2, headers=header_for(
                self.home / "gateways" / self.gateway_id))
        except (httpx.HTTPError, GatewayError):
            return None
        return resp.json() if resp.status_code == 200 else None

    # -- devices ----------------------------------------------------------------------------
    def start_device(self, device_id: str, profile: str, interpreter: str = "micropython",
                     records: int | None = None, interval_ms: int | None = None,
                     heap: str | None = None, consent: str | None = "personal",
                     heartbeat_s: int | None = None) -> Process:
        """Start a device as its owner would: `fleetloop device run`, then (unless `consent` is
        None) the owner grants `consent` on the product, as they would with its button. A new
        device samples at `essential` and sends no telemetry until then; the grant is its
        first record (seq 1 of a new incarnation) and a no-op when it already holds that tier."""
        args = ["device", "run", "--home", str(self.home), "--id", device_id,
                "--profile", profile, "--broker", f"localhost:{self.mqtt_port}",
                "--interpreter", interpreter]
        if heap is not None:
            args += ["--heap", heap]
        if records is not None:
            args += ["--records", str(records)]
        if interval_ms is not None:
            args += ["--interval-ms", str(interval_ms)]
        if heartbeat_s is not None:
            args += ["--heartbeat-s", str(heartbeat_s)]
        self.enrol([(device_id, profile)])  # as the factory would, before it ships
        proc = self.supervisor.start(self._process(f"device-{device_id}", args))
        self.devices[device_id] = proc
        if consent is not None:
            self.grant_consent(device_id, consent, proc)
        return proc

    def grant_consent(self, device_id: str, tier: str, proc: Process | None = None) -> None:
        """The owner sets consent on the product (`fleetloop device consent`), once `device run`
        has provisioned its image."""
        from fleetloop.device_consent import request

        image = self.home / "devices" / device_id
        self.wait_until(lambda: (image / "identity.json").is_file(), proc,
                        what=f"the image of {device_id}")
        request(self.home, device_id, tier)

    def with_gateway(self, gateway_id: str) -> Stack:
        """Another gateway of the same fleet: same home, cloud and process supervisor, its own
        broker and status ports. Start it with register_gateway() and start_gateway()."""
        other = Stack(home=self.home, supervisor=self.supervisor, gateway_id=gateway_id,
                      admin_token=self.admin_token, dev=self.dev, cloud_port=self.cloud_port)
        other.cloud = self.cloud
        return other

    def start_path(self, device_ids: list[str]) -> None:
        """Keys, cloud, gateway registered and running: everything a device needs to deliver."""
        self.keygen(device_ids)
        self.start_cloud()
        self.register_gateway()
        self.start_gateway()

    # -- reading the cloud --------------------------------------------------------------------
    def cloud_devices(self) -> list[dict[str, Any]]:
        with self.admin() as client:
            resp = client.get("/api/v1/devices")
            resp.raise_for_status()
            return list(resp.json())

    def telemetry(self, device_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after: dict[str, int] = {}  # the last record's (incarnation, seq): the cloud's cursor
        with self.admin() as client:
            while True:
                resp = client.get(f"/api/v1/devices/{device_id}/telemetry",
                                  params={**after, "limit": 5000})
                if resp.status_code == 404:
                    return out
                resp.raise_for_status()
                page = resp.json()["records"]
                if not page:
                    return out
                out.extend(page)
                after = {"after_incarnation": page[-1]["incarnation"],
                         "after_seq": page[-1]["seq"]}

    # -- waiting ------------------------------------------------------------------------------
    def wait_http(self, url: str, proc: Process, timeout: float = 30.0) -> None:
        def ok() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_until(ok, proc, timeout=timeout, what=url)

    def wait_until(self, check: Any, proc: Process | None = None, timeout: float = 30.0,
                   what: str = "condition", interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if proc is not None and not proc.alive:
                raise ProcessError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
            time.sleep(interval)
        raise ProcessError(f"timed out after {timeout}s waiting for {what}\n{self.supervisor.logs()}")

    def stop(self) -> None:
        self.supervisor.stop_all()


def seqs_of(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["seq"]) for r in records]


def wait_records(stack: Stack, device_id: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until the cloud holds at least `count` records of a device; return them all."""
    holder: dict[str, list[dict[str, Any]]] = {}

    def enough() -> bool:
        holder["records"] = stack.telemetry(device_id)
        return len(holder["records"]) >= count

    stack.wait_until(enough, timeout=timeout, interval=0.3,
                     what=f"{count} records of {device_id} in the cloud")
    return holder["records"]
