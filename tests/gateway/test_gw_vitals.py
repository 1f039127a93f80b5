"""Vitals and consent at the first hop, through the real broker and gateway: states with vitals
out of bounds and consent records of unknown tiers are refused (counted, with their reason, in
the status and `diag`) while everything else flows; valid consent records go through like any
record; each device's latest accepted vitals show in the status and `diag`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gwkit import ROOT, Device, FakeCloud, RunningGateway, gateway_settings, wait_for
from typer.testing import CliRunner

from gateway.cli import app
from protocol import record as record_codec
from protocol import state as state_codec
from protocol import tag

GatewayStarter = Callable[..., RunningGateway]
DeviceMaker = Callable[..., Device]
VECTORS = ROOT / "tests" / "vectors"


def _vectors(name: str) -> dict[str, Any]:
    return dict(json.loads((VECTORS / name).read_text()))


def _state(dev: Device, **fields: Any) -> dict[str, Any]:
    base = {"v": 2, "d": dev.device_id, "i": dev.incarnation, "t": 1732345678200,
            "impl": "micropython", "config_version": 3, "config_status": "applied",
            "reason": "", "heap_free": 40211, "buffered": 4, "dropped": 0, "seq": 0,
            "floor": 1, "why": "heartbeat", "uptime_s": 3600, "heap_low": 6800,
            "buffer_bytes": 512, "reconnects": 2, "consent": "usage", "hint_ms": 1500}
    base.update(fields)
    return base


def _tagged(dev: Device, obj: dict[str, Any]) -> bytes:
    """Tagged bytes of `obj` without the protocol's checks (to forge what it refuses)."""
    return tag.append(dev.mac, json.dumps(obj, separators=(",", ":")).encode())


def _diag_text(gw: RunningGateway) -> str:
    result = CliRunner().invoke(app, ["diag", "--url", gw.settings.status_url, "--home",
                                      str(gw.settings.home)], env={"COLUMNS": "300"})
    assert result.exit_code in (0, 1), result.output  # 1: problems found (refused messages)
    return result.output


def test_absurd_vitals_and_unknown_consent_tiers_are_refused_while_the_rest_flows(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike, other = devices(home, "bike-1", gw.port), devices(home, "bike-2", gw.port)
    first = state_codec.encode(_state(bike), bike.mac)
    bike.publish("fleet/bike-1/state", first)
    bad_states = [v["wire"].encode() for v in _vectors("states.json")["invalid"]]
    bad_states += [_tagged(bike, _state(bike, heap_free=1 << 31)),
                   _tagged(bike, _state(bike, consent="everything")),
                   _tagged(bike, _state(bike, uptime_s=200 * 366 * 86400))]
    bad_records = [v["wire"].encode() for v in _vectors("records.json")["invalid"]
                   if "consent" in v["why"]]
    bad_records.append(tag.append(bike.mac, record_codec.consent_signed_bytes(
        "bike-1", bike.incarnation, 99, 1, "usage", "device", 0).replace(b'"usage"',
                                                                          b'"everything"')))
    seq = 0
    for payload in bad_states:
        bike.publish("fleet/bike-1/state", payload)
        seq += 1
        bike.send(seq)
        other.send(seq)
    for payload in bad_records:
        bike.publish("fleet/bike-1/telemetry", payload)
        seq += 1
        bike.send(seq)
        other.send(seq)
    wait_for(lambda: bike.acked == seq and other.acked == seq, 10, f"both acked {seq}")
    wait_for(lambda: len(cloud.records) == 2 * seq and cloud.states, 10, "good ones delivered")
    assert cloud.seqs("bike-1") == list(range(1, seq + 1)) == cloud.seqs("bike-2")
    assert cloud.states == [json.loads(first)]  # no refused state went on

    st = gw.status()
    assert st["ingest"]["rejected"] == len(bad_states) + len(bad_records)
    reasons = st["ingest"]["reject_reasons"]
    expected = {"bad state: state field heap_free must be an int in 0..1073741824": 2,
                "bad state: state field uptime_s must be an int in 0..316224000": 2,
                "bad state: bad consent": 2,
                "bad record: unknown consent tier": 2,
                "bad record: unknown consent origin": 1,
                "bad state: bad why": 1}
    assert {r: reasons.get(r) for r in expected} == expected
    [vitals] = st["vitals"]["devices"]  # the refused states changed nothing
    assert vitals["device"] == "bike-1" and vitals["heap_free"] == 40211
    assert (vitals["consent"], vitals["uptime_s"]) == ("usage", 3600)
    text = _diag_text(gw)
    for reason in list(expected)[:4]:
        assert f"2 x {reason}" in text
    assert f"{len(bad_states) + len(bad_records)} message(s) refused since start" in text


def test_the_latest_accepted_vitals_of_each_device_show_in_status_and_diag(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    gw = run_gateway(gateway_settings(home, cloud.url))
    bike, mirror = devices(home, "bike-1", gw.port), devices(home, "mirror-1", gw.port)
    bike.publish("fleet/bike-1/state", state_codec.encode(_state(bike), bike.mac))
    latest = _state(bike, why="config", consent="personal", heap_low=5120, uptime_s=7300,
                    buffered=17, buffer_bytes=2210, reconnects=5, config_status="rejected",
                    config_version=4, reason="sample_ms out of range", reset_cause="watchdog",
                    resets=3, link_error="tls handshake", link_failures=2, hint_ms=2000)
    bike.publish("fleet/bike-1/state", state_codec.encode(latest, bike.mac))
    older = {"v": 1, "d": "mirror-1", "t": 5, "impl": "cpython", "config_version": 0,
             "config_status": "none", "seq": 0}  # older firmware: no vitals at all
    mirror.publish("fleet/mirror-1/state", state_codec.encode(older))
    wait_for(lambda: len(cloud.states) == 3, 10, "three states in the cloud")
    st = gw.status()["vitals"]
    assert st["total"] == 2
    by_device = {v["device"]: v for v in st["devices"]}
    got = by_device["bike-1"]
    for name in ("consent", "heap_low", "uptime_s", "buffered", "buffer_bytes", "reconnects",
                 "why", "reason", "config_status", "reset_cause", "link_error", "hint_ms"):
        assert got[name] == latest[name], name
    assert got["incarnation"] == bike.incarnation and got["received_ms"] > 0
    assert by_device["mirror-1"]["incarnation"] == 0
    assert by_device["mirror-1"]["consent"] is None and by_device["mirror-1"]["heap_low"] is None

    text = _diag_text(gw)
    [row] = [line for line in text.splitlines() if line.startswith("bike-1")]
    for shown in ("config", "personal", "5120 B", "2h", "17 rec / 2210 B", "2000 ms",
                  "config 4 rejected: sample_ms out of range", "link: tls handshake (x2)",
                  "reset: watchdog (x3)"):
        assert shown in row, shown
    assert " 5 " in row  # reconnects
    [row] = [line for line in text.splitlines() if line.startswith("mirror-1")]
    assert "personal" not in row and "B" not in row


def test_consent_records_pass_through_like_records(
        home: Path, cloud: FakeCloud, run_gateway: GatewayStarter, devices: DeviceMaker) -> None:
    """Deduped by (device, incarnation, seq), acked, and forwarded byte for byte in batches
    (the vectors' tags are not this test's keys: only the cloud checks tags)."""
    gw = run_gateway(gateway_settings(home, cloud.url))
    vectors = [v for v in _vectors("records.json")["consent"] if v["device"] == "bike-1"]
    bike, mirror = devices(home, "bike-1", gw.port), devices(home, "mirror-1", gw.port)
    bike.incarnation = vectors[0]["incarnation"]
    wires = [v["wire"].encode() for v in vectors]  # seqs 1 and 2
    wires.append(bike.record(3))
    wires.append(record_codec.encode_consent("bike-1", bike.incarnation, 4, 1732345680000,
                                             "essential", "device", 0, bike.mac))
    for wire in wires:
        bike.publish("fleet/bike-1/telemetry", wire)
    bike.publish("fleet/bike-1/telemetry", wires[1])  # resent: a duplicate, acked again
    narrowed = record_codec.encode_consent("mirror-1", mirror.incarnation, 1, 1732345680000,
                                           "essential", "cloud", 2147483647, mirror.mac)
    mirror.publish("fleet/mirror-1/telemetry", narrowed)
    mirror.send(2)
    wait_for(lambda: bike.acked == 4 and mirror.acked == 2, 10, "acks 4 and 2")
    wait_for(lambda: len(cloud.records) == 6, 10, "six records in the cloud")
    st = gw.status()["ingest"]
    assert (st["records"], st["duplicates"], st["rejected"]) == (6, 1, 0)
    sent = [item for b in cloud.batches for item in b.records]
    assert sorted(sent) == sorted(w.decode() for w in [*wires, narrowed, mirror.record(2)])
    assert cloud.records[("bike-1", 1)]["c"] == {"cfg": 0, "origin": "device",
                                                 "tier": "personal"}
    assert cloud.records[("mirror-1", 1)]["c"]["origin"] == "cloud"
    assert "m" not in cloud.records[("bike-1", 4)]
