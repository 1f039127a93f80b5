"""Updates end to end on real parts: the factory's `fw build`, the cloud's rollout
(`fleetloop rollout`), the gateway's cache and its Mosquitto, and bikes on the real MicroPython
unix port booting from ROMFS slots.

A new version reaches two bikes in one wave, one of them losing its power (kill -9 of its
runner) in the middle of the update; both commit, keep every record, and count as success only
after the soak (waves, thresholds and verdicts in detail: tests/cloud/test_cloud_rollouts.py). Then a version that crashes at start is rolled back by the device itself and its
wave's failure pauses the rollout.

A second test covers what is not what was signed, or never comes up:
- a tampered chunk, injected at the broker by another client while the gateway is frozen
  (SIGSTOP: the device's fetches reach only the intruder): the device alone refuses the file
  (its sha256 is not the signed manifest's), keeps running its version, and the cloud shows
  the device's reason. Nothing in the gateway's code is involved in the tampering;
- a version that hangs at start and so never sends a heartbeat: the rollout's deadline fails
  it and the wave's threshold pauses the rollout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fleetloop.stack import CLI, Stack, seqs_of, wait_records
from gateway.ota_cache import Ready, read_bundle, verify_bundle
from gateway.ota_serve import ChunkServer
from protocol import topics
from protocol.bundle import read_release_pub

pytestmark = pytest.mark.e2e

BIKES = ["bike-1", "bike-2"]


def build(stack: Stack, tmp: Path, version: str, edit: tuple[str, str, str] | None = None) -> Path:
    """`fleetloop fw build` of the bike at `version`, from a copy of the device package with
    one module edited (path, old text, new text)."""
    from fwtool.provision import package_dir

    src = tmp / f"src-{version}" / "device"
    shutil.copytree(package_dir("device"), src, ignore=shutil.ignore_patterns("__pycache__"))
    if edit:
        module, old, new = edit
        text = (src / module).read_text()
        assert old in text
        (src / module).write_text(text.replace(old, new, 1))
    from fwtool.release import build_release

    out = tmp / f"bike-{version}.flb"
    out.write_bytes(build_release(stack.home, "bike", version, device_src=src).data)
    return out


def rollout(stack: Stack, *args: str) -> Any:
    token = stack.home / "ops-token"
    token.write_text(stack.admin_token)
    out = subprocess.run([*CLI, "rollout", *args, "--cloud", stack.cloud_url, "--token-file",
                          str(token), "--json"], env=stack.env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def words(stack: Stack, rollout_id: str) -> dict[str, dict[str, Any]]:
    with stack.admin() as admin:
        body = admin.get(f"/api/v1/rollouts/{rollout_id}").json()
    return {d["device"]: d for d in body["devices"]} | {"": body}


def events(stack: Stack, device: str) -> list[dict[str, Any]]:
    out = []
    for line in stack.devices[device].log().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def test_a_rollout_installs_commits_and_rolls_back_on_real_devices(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.monotonic()

    def mark(what: str) -> None:
        print(f"{time.monotonic() - t0:6.1f} s  {what}")
    monkeypatch.setenv("FLEETLOOP_OTA_POLL_S", "0.5")
    stack.start_path(BIKES)
    for bike in BIKES:
        stack.start_device(bike, "bike", interval_ms=500, heartbeat_s=5)
    for bike in BIKES:
        wait_records(stack, bike, 2)

    mark("records flowing")
    v2 = build(stack, tmp_path, "0.2.0", ("profiles/bike.py", '"""', '"""Version 0.2.0. '))
    assert rollout(stack, "upload", str(v2))["key"] == "bike-0.2.0"
    plan = rollout(stack, "create", "--bundle", "bike-0.2.0", "--device", "bike-1",
                   "--device", "bike-2", "--waves", "100", "--soak", "10s",
                   "--threshold", "0%", "--deadline", "120s")
    rid = plan["id"]
    mark("rollout created")

    # A power cut of one bike while it downloads or installs: it carries on when it is back.
    def busy(bike: str) -> bool:
        return any(e.get("event") == "update" and e.get("status") in ("downloading", "stopping")
                   for e in events(stack, bike))

    cut = stack.wait_until(lambda: next((b for b in BIKES if busy(b)), None), timeout=60,
                           what="a bike downloading")
    mark(f"power cut of {cut}")
    stack.devices[cut].kill9()
    stack.start_device(cut, "bike", interval_ms=500, heartbeat_s=5, consent=None)

    try:
        final = stack.wait_until(
            lambda: (w := words(stack, rid))[""]["state"] == "completed" and w, timeout=150,
            what="the rollout to complete")
    except Exception:
        print(json.dumps(words(stack, rid), indent=1))
        raise
    mark("rollout completed")
    for bike in BIKES:
        assert final[bike]["word"] == "success", final[bike]
        assert final[bike]["version"] == "0.2.0"
        image = stack.home / "devices" / bike
        boot = json.loads((image / "fw" / "boot.json").read_text())
        assert (boot["active"], boot["b"], "trial" in boot) == ("b", "0.2.0", False)
        assert (image / "fw" / "floor").read_text().strip() == "0.2.0"
    # Nothing lost: every record of both bikes arrived, before, during and after the update.
    for bike in BIKES:
        seqs = seqs_of(wait_records(stack, bike, 2))
        assert seqs == list(range(1, len(seqs) + 1)), f"{bike}: a gap in {seqs}"

    # A version that crashes at start: the device rolls back by itself, the wave pauses.
    v3 = build(stack, tmp_path, "0.3.0",
               ("agent.py", "class Agent:", "raise RuntimeError('0.3.0 is broken')\n\n\nclass Agent:"))
    mark("0.3.0 built")
    rollout(stack, "upload", str(v3))
    bad = rollout(stack, "create", "--bundle", "bike-0.3.0", "--device", "bike-1",
                  "--waves", "100", "--soak", "10s", "--threshold", "0%")
    end = stack.wait_until(lambda: (w := words(stack, bad["id"]))[""]["state"] == "auto_paused"
                           and w, timeout=120, what="the broken version's rollout to pause")
    mark("0.3.0 rolled back")
    assert end["bike-1"]["word"] == "rolled_back"
    assert "0.3.0 did not commit in 3 boots (last reset: crash)" in end["bike-1"]["reason"]
    boot = json.loads((stack.home / "devices" / "bike-1" / "fw" / "boot.json").read_text())
    assert (boot["active"], "trial" in boot) == ("b", False), "0.2.0 runs again"
    before = len(wait_records(stack, "bike-1", 1))
    time.sleep(2)
    assert len(wait_records(stack, "bike-1", before + 1)) > before, "it samples and sends again"

INTRUDER = "intruder"


def tampered(bundle: Path, release_pub: bytes) -> Ready:
    """The bundle as the gateway would serve it, every carried file with its last byte
    flipped: the signed manifest (file 0) is genuine, so only the files' hashes can tell."""
    data = bundle.read_bytes()
    ready = verify_bundle("bike-0.2.0", read_bundle(data), len(data), release_pub, None)
    files = {i: (body if i == 0 else body[:-1] + bytes([body[-1] ^ 0x01]))
             for i, body in ready.files.items()}
    return Ready(ready.key, ready.offer_id, ready.product, ready.version, ready.kind,
                 ready.base, files, ready.disk_bytes)


class Intruder:
    """A client of the broker that may write chunks (granted by an ACL line, as a
    misconfigured or compromised broker would) and answers one device's fetches with
    `ready`'s bytes, through the gateway's own chunk format."""

    def __init__(self, stack: Stack, device: str, ready: Ready) -> None:
        self.fetches = 0
        self.client = stack.mqtt_client(INTRUDER)
        self.server = ChunkServer(self._send, lambda d: ready if d == device else None)
        self.stop = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            topics.topic(device, topics.FETCH), qos=0)
        self.client.connect("localhost", stack.mqtt_port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self.server.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def _send(self, topic: str, payload: bytes) -> bool:
        return self.client.publish(topic, payload, qos=0).rc == mqtt.MQTT_ERR_SUCCESS

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.fetches += 1
        self.server.submit(msg.topic, msg.payload)

    def close(self) -> None:
        self.stop.set()
        self.client.loop_stop()
        self.client.disconnect()
        self.thread.join(5)


def grant_intruder(stack: Stack) -> None:
    """The ACL lines a broker should never have, read by Mosquitto on SIGHUP."""
    broker = stack.home / "gateways" / stack.gateway_id / "broker"
    with open(broker / "acl", "a") as acl:
        acl.write(f"\nuser {INTRUDER}\ntopic write fleet/+/chunk\ntopic read fleet/+/fetch\n")
    pid = int((broker / "mosquitto.pid").read_text())
    os.kill(pid, signal.SIGHUP)


def test_a_tampered_chunk_from_the_broker_is_refused_by_the_device_and_a_hang_fails_by_deadline(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETLOOP_OTA_POLL_S", "0.5")
    stack.start_path(["bike-1", "bike-2", INTRUDER])
    for bike in ("bike-1", "bike-2"):
        stack.start_device(bike, "bike", interval_ms=500, heartbeat_s=5)
    for bike in ("bike-1", "bike-2"):
        wait_records(stack, bike, 2)
    grant_intruder(stack)

    v2 = build(stack, tmp_path, "0.2.0", ("profiles/bike.py", '"""', '"""Version 0.2.0. '))
    rollout(stack, "upload", str(v2))
    pub = read_release_pub(stack.home / "keys" / "release.pub")
    intruder = Intruder(stack, "bike-1", tampered(v2, pub))
    gateway = stack.gateway
    assert gateway is not None
    try:
        plan = rollout(stack, "create", "--bundle", "bike-0.2.0", "--device", "bike-1",
                       "--waves", "100", "--soak", "10s", "--threshold", "0%")
        stack.wait_until(lambda: intruder.fetches > 0, timeout=60,
                         what="bike-1 asking for the update's bytes")
        os.kill(gateway.pid, signal.SIGSTOP)  # from now on only the intruder answers
        try:
            refused = stack.wait_until(
                lambda: next((e for e in events(stack, "bike-1") if e.get("event") == "update"
                              and e.get("status") == "failure"), None),
                timeout=90, what="bike-1 refusing the update")
        finally:
            os.kill(gateway.pid, signal.SIGCONT)
    finally:
        intruder.close()
    assert "sha256 mismatch" in refused["reason"], refused
    end = stack.wait_until(lambda: (w := words(stack, plan["id"]))["bike-1"]["word"] == "failure"
                           and w, timeout=60, what="the cloud to show the device's refusal")
    assert "sha256 mismatch" in end["bike-1"]["reason"]
    assert end[""]["state"] == "auto_paused"
    boot_path = stack.home / "devices" / "bike-1" / "fw" / "boot.json"
    assert '"active": "a"' in boot_path.read_text().replace('":"', '": "'), "0.1.0 still runs"
    before = len(wait_records(stack, "bike-1", 1))
    assert len(wait_records(stack, "bike-1", before + 2)) > before, "it samples and sends"

    # A version that hangs before it ever connects: failed by the deadline, the wave paused.
    v3 = build(stack, tmp_path, "0.3.0",
               ("profiles/bike.py", '"""', 'import time\nwhile True:\n    time.sleep(1)\n"""'))
    rollout(stack, "upload", str(v3))
    hang = rollout(stack, "create", "--bundle", "bike-0.3.0", "--device", "bike-2",
                   "--waves", "100", "--soak", "10s", "--threshold", "0%", "--deadline", "20s")
    t0 = time.monotonic()
    end = stack.wait_until(lambda: (w := words(stack, hang["id"]))[""]["state"] == "auto_paused"
                           and w, timeout=150, what="the hanging version's rollout to pause")
    print(f"paused {time.monotonic() - t0:.1f} s after the rollout began: {end['bike-2']}")
    assert end["bike-2"]["word"] == "failure", end["bike-2"]
    assert "silent for 20 s after it started downloading" in end["bike-2"]["reason"]
    boot = json.loads((stack.home / "devices" / "bike-2" / "fw" / "boot.json").read_text())
    assert (boot["active"], boot.get("trial"), boot["b"]) == ("a", "b", "0.3.0"), \
        "it is silent because 0.3.0 hangs on its trial boot, not because it never installed"
