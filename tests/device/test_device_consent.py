"""Consent, vitals and the back-pressure hint on the real MicroPython unix port against a real
TLS Mosquitto: the product's consent button (before the first boot and while running), what
a tier keeps off flash, a narrowing signed down from the cloud and a widening refused, the
heartbeat's vitals, and the hint kept across a restart and applied to reconnects."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from devkit import Device, Gateway, Mosquitto, make_image, wait_for, wait_state

from fleetloop.device_consent import request
from protocol import config, hint, record, state

pytestmark = pytest.mark.e2e
# As test_device_mqtt: the shipped image's 56 KB budget plus the bytecode of .mpy files (these
# tests are about behaviour; the budget itself is measured on ROMFS by fleetloop bench heap).
MPY_HEAP = "72K"


def _on_flash(image: Path) -> bytes:
    buf = image / "data" / "buffer"
    return b"".join(p.read_bytes() for p in sorted(buf.iterdir()) if p.name.startswith("seg-"))


def _consent_records(gateway: Gateway, device: str) -> list[dict]:
    with gateway.lock:
        wires = list(gateway.records.get(device, {}).values())
    return [r for r in map(record.decode, wires) if record.is_consent(r)]


def test_at_essential_nothing_is_buffered_and_heartbeats_carry_the_vitals(
        home: Path, tmp_path: Path, broker: Mosquitto, gateway: Gateway,
        devices: list[Device]) -> None:
    image = make_image(home, tmp_path / "img", "bike-1", "bike", broker.port)
    dev = Device(image, "micropython", records=5, interval_ms=10, consent=None, heartbeat_s=1, heap=MPY_HEAP)
    devices.append(dev)
    boot = dev.wait_event("boot")
    assert (boot["consent"], boot["allowed"], boot["seq"]) == ("essential", 0, 0)
    first = wait_state(gateway, d="bike-1", why="connect")

    def heartbeats() -> list[dict]:
        found = [s for s in gateway.states if s.get("why") == "heartbeat"]
        return found if len(found) >= 3 else []

    beats = wait_for(heartbeats, 20, "three heartbeats")
    # every state passed protocol.state.decode at the test gateway, and its tag verified
    assert gateway.bad_tags == []
    last = beats[-1]
    assert (last["consent"], last["hint_ms"], last["reconnects"]) == ("essential", 0, 0)
    assert last["uptime_s"] >= first["uptime_s"] + 1 and last["uptime_s"] < 60
    assert 0 < last["heap_low"] <= last["heap_free"] + 65536 and last["heap_low"] < 65536
    assert last["buffer_bytes"] == 0 and last["seq"] == 0 and "rssi" not in last
    # ~1 s apart (generous: a loaded machine)
    times = [s["t"] for s in beats]
    assert all(0.5 * 1000 <= b - a <= 5000 for a, b in zip(times, times[1:], strict=False)), times
    # samples were taken, but not one record: every bike metric needs more than essential
    assert gateway.seqs("bike-1") == [] and _on_flash(image) == b""
    assert not [e for e in dev.events if e["event"] == "produced"]


def test_the_consent_button_while_running_widens_and_narrows_before_the_buffer(
        home: Path, tmp_path: Path, broker: Mosquitto, gateway: Gateway,
        devices: list[Device]) -> None:
    fl_home = tmp_path / "home"
    image = make_image(home, fl_home / "devices" / "bike-1", "bike-1", "bike", broker.port)
    gateway.acking = False  # records stay on flash, where the test looks too
    dev = Device(image, "micropython", interval_ms=20, consent=None, heap=MPY_HEAP)
    devices.append(dev)
    wait_state(gateway, d="bike-1", why="connect", consent="essential")
    request(fl_home, "bike-1", "usage")  # the customer presses the button
    applied = dev.wait_event("consent", status="applied", timeout=10)
    assert (applied["tier"], applied["origin"]) == ("usage", "device")
    assert not (image / "data" / "consent.request").exists()
    wait_state(gateway, d="bike-1", why="consent", consent="usage")
    wait_for(lambda: len(gateway.seqs("bike-1")) >= 8, 20, "records at usage")
    flash = _on_flash(image)
    assert b'"cadence"' in flash and b"heart_rate" not in flash
    with gateway.lock:
        published = list(gateway.records["bike-1"].values())
    assert published and not any(b"heart_rate" in w for w in published)
    c = _consent_records(gateway, "bike-1")
    assert [r["c"] for r in c] == [{"cfg": 0, "origin": "device", "tier": "usage"}]
    assert c[0]["s"] == 1  # before any record of the tier
    # A bad press is refused with a reason, and changes nothing.
    (image / "data" / "consent.request").write_text('{"tier":"everything"}')
    bad = dev.wait_event("consent", status="rejected", timeout=10)
    assert "everything" in bad["reason"]
    assert not (image / "data" / "consent.request").exists()
    # The CLI, as the owner uses it: narrowed to essential, and nothing more is buffered.
    out = subprocess.run([sys.executable, "-m", "fleetloop", "device", "consent", "--id", "bike-1",
                          "--tier", "essential", "--home", str(fl_home), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tier"] == "essential"
    dev.wait_event("consent", status="applied", tier="essential", timeout=10)
    st = wait_state(gateway, d="bike-1", why="consent", consent="essential")
    time.sleep(1.0)  # 50 samples' time: none of them buffered
    last = record.decode(_on_flash(image).splitlines()[-1][9:])
    assert (last["s"], last.get("c", {}).get("tier")) == (st["seq"], "essential")
    on_flash = [record.decode(line[9:]) for line in _on_flash(image).splitlines()]
    tiers = [r["c"]["tier"] for r in on_flash if record.is_consent(r)]
    assert tiers == ["usage", "essential"] and gateway.bad_tags == []
    assert not any("heart_rate" in r.get("m", {}) for r in on_flash)
    missing = subprocess.run([sys.executable, "-m", "fleetloop", "device", "consent", "--id",
                              "bike-9", "--tier", "usage", "--home", str(fl_home)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no device image" in missing.stderr


def test_consent_before_the_first_boot_then_narrowed_from_the_cloud_and_widening_refused(
        home: Path, tmp_path: Path, broker: Mosquitto, gateway: Gateway,
        devices: list[Device]) -> None:
    key = load_pem_private_key((home / "keys" / "config.key.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)

    def envelope(version: int, tier: str) -> bytes:
        return config.seal({"device": "bike-1", "version": version, "issued": 1,
                            "settings": {"interval_ms": 100}, "consent": tier}, key.sign)

    fl_home = tmp_path / "home"
    image = make_image(home, fl_home / "devices" / "bike-1", "bike-1", "bike", broker.port)
    request(fl_home, "bike-1", "personal")  # pressed before the device ever started
    dev = Device(image, "micropython", interval_ms=20, consent=None, heap=MPY_HEAP)
    devices.append(dev)
    assert dev.wait_event("boot")["consent"] == "personal"
    wait_for(lambda: any(b"heart_rate" in w for w in gateway.records.get("bike-1", {}).values()),
             20, "personal metrics")
    gateway.publish_config("bike-1", envelope(1, "usage"))  # the owner narrows in their account
    logged = dev.wait_event("consent", status="logged", timeout=30)
    assert (logged["tier"], logged["origin"], logged["cfg"]) == ("usage", "cloud", 1)
    st = wait_state(gateway, d="bike-1", consent="usage", config_version=1)
    assert st["config_status"] == "applied"
    wait_for(lambda: len(gateway.seqs("bike-1")) > st["seq"] + 3, 20, "records after narrowing")
    c = _consent_records(gateway, "bike-1")
    assert [r["c"] for r in c] == [{"cfg": 0, "origin": "device", "tier": "personal"},
                                   {"cfg": 1, "origin": "cloud", "tier": "usage"}]
    with gateway.lock:
        after = [w for s, w in gateway.records["bike-1"].items() if s > c[1]["s"]]
    assert after and not any(b"heart_rate" in w for w in after)
    # A downlink that would widen it again is refused whole: the version stays 1.
    gateway.publish_config("bike-1", envelope(2, "personal"))
    reason = "consent can only be widened on the product (personal is wider than usage)"
    st = wait_state(gateway, d="bike-1", config_status="rejected", timeout=40)
    assert (st["reason"], st["config_version"], st["consent"]) == (reason, 1, "usage")
    assert json.loads((image / "data" / "consent.json").read_text())["tier"] == "usage"
    # ... and the device restates its own tier with that version, so the cloud stops asking.
    wait_for(lambda: len(_consent_records(gateway, "bike-1")) == 3, 20, "the restatement")
    assert _consent_records(gateway, "bike-1")[2]["c"] == {
        "cfg": 2, "origin": "device", "tier": "usage"}
    assert gateway.conflicts == [] and gateway.bad_tags == []


def test_the_hint_is_kept_across_a_restart_and_spreads_reconnects(
        home: Path, tmp_path: Path, broker: Mosquitto, gateway: Gateway,
        devices: list[Device]) -> None:
    image = make_image(home, tmp_path / "img", "bike-1", "bike", broker.port)
    dev = Device(image, "micropython", records=3, interval_ms=10, heap=MPY_HEAP)
    devices.append(dev)
    wait_state(gateway, d="bike-1")
    gateway.publish_hint(b'{"v":1,"min_reconnect_ms":"soon"}')
    assert dev.wait_event("bad_hint")["reason"]
    assert not (image / "data" / "hint.json").exists()
    gateway.publish_hint(hint.encode(2500))
    assert dev.wait_event("hint")["min_reconnect_ms"] == 2500
    assert json.loads((image / "data" / "hint.json").read_text()) == {"min_reconnect_ms": 2500}
    dev.wait_event("drained", acked=3)
    dev.stop()
    gateway.stop()
    broker.stop()  # the restarted device finds no broker: every connect fails
    again = Device(image, "micropython", records=3, interval_ms=10, heap=MPY_HEAP)
    devices.append(again)
    assert again.wait_event("boot")["hint_ms"] == 2500  # read from flash
    wait_for(lambda: len([e for e in again.events if e["event"] == "disconnected"]) >= 3, 30,
             "three failed connects")
    # Without the hint the first retries wait 0.25-1 s; with it at least 2.5 s each.
    at = [t for e, t in zip(again.events, again.times, strict=False)
          if e["event"] == "disconnected"]
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    assert all(g >= 2.3 for g in gaps[:2]), gaps


def test_state_with_every_vital_at_its_longest_stays_under_the_limit() -> None:
    # device/agent.py cuts reason and link error to 160 characters (to 32 if escapes make
    # them longer than that on the wire)
    fields = {"v": 2, "d": "x" * 64, "i": 2**31 - 1, "t": 2**53 - 1, "impl": "micropython",
              "fw": "0.1.0-longest", "profile": "engine", "config_version": 2**31 - 1,
              "config_status": "rejected", "reason": "r" * 160, "heap_free": 2**30,
              "buffered": 2**53 - 1, "dropped": 2**53 - 1, "seq": 2**53 - 1, "floor": 2**53 - 1,
              "reset_cause": "requested", "resets": 2**53 - 1, "link_error": "e" * 160,
              "link_failures": 2**53 - 1, "why": "heartbeat", "uptime_s": 10 * 366 * 86400,
              "heap_low": 2**30, "buffer_bytes": 2**53 - 1, "reconnects": 2**53 - 1,
              "consent": "essential", "hint_ms": 600000}
    from protocol import tag

    wire = state.encode(fields, tag.Hmac(b"\x01" * 32))
    assert len(wire) <= state.MAX_STATE_BYTES, len(wire)
    state.decode(wire)
