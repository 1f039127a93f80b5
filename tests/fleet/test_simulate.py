"""The fleet simulator through the real stack: 25 products (the real device code) through a
real gateway and its Mosquitto to a real cloud over three simulated weeks. Every record is
stored once, devices whose power was cut mid-run catch up, and a config pushed from the cloud
changes what the riders do the way the truth says it should (checked in the cloud's data).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cloud.loop.holdout import FLEET_UNITS, TRAIN_UNITS
from fleetloop.fleet.options import Options
from fleetloop.fleet.simulate import Simulation
from fleetloop.fleet.truth import Truth
from fleetloop.procs import pids_mentioning

TARGET_W = 100  # the pushed target power: below every rider's sustainable power
CLI = [sys.executable, "-m", "fleetloop"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sim") / "run"
    options = Options(devices=25, mix={"bike": 0.6, "mirror": 0.2, "engine": 0.2}, weeks=3,
                      speed=150000, seed=7, out=out, power_cuts=3)
    seen: dict[str, Any] = {}

    def push_target_power(sim: Simulation) -> None:
        """Cloud ops set a target power for every bike a third of the way in."""
        if "pushed_ms" in seen or sim.fleet.fraction() < 1 / 3:
            return
        seen["pushed_ms"] = sim.fleet.now()
        assert sim.stack is not None
        with sim.stack.admin() as cloud:
            for device_id, product, _ in sim.plan.devices:
                if product == "bike":
                    cloud.put(f"/api/v1/devices/{device_id}/config",
                              json={"settings": {"target_power_w": TARGET_W}}).raise_for_status()

    def read_cloud(sim: Simulation) -> None:
        assert sim.stack is not None
        seen["records"] = {d: sim.stack.telemetry(d) for d, _, _ in sim.plan.devices}
        seen["devices"] = {d["id"]: d for d in sim.stack.cloud_devices()}
        seen["plan"] = sim.plan.devices

    summary = Simulation(options).run(push_target_power, read_cloud)
    seen["summary"] = summary
    seen["truth"] = Truth.load(out / "truth.json")
    return seen


def test_every_record_is_stored_once(run: dict[str, Any]) -> None:
    s = run["summary"]
    assert s.complete and not s.interrupted
    assert s.lost == 0 and s.duplicates == 0
    assert s.sampled > 1000, "three weeks of 25 products sample more than that"
    assert s.stored == s.sampled + s.consent_records == s.acknowledged
    # No record waited for an ack timeout: the products are idle for hours between uses, and
    # the ack timer runs from a record's first send, not from the last ack before the pause.
    assert "resend" not in s.events, s.events
    for device_id, records in run["records"].items():
        seqs = [r["seq"] for r in records]
        assert seqs == list(range(1, len(seqs) + 1)), f"{device_id}: each seq once, none missing"
        assert len({r["incarnation"] for r in records}) <= 1


def test_record_times_lie_in_the_simulated_span_and_never_in_the_future(
        run: dict[str, Any]) -> None:
    s = run["summary"]
    times = [r["t"] for records in run["records"].values() for r in records]
    assert min(times) >= s.data_start_ms
    assert max(times) <= s.data_end_ms <= int(time.time() * 1000)
    assert s.data_end_ms - s.data_start_ms == 3 * 7 * 86400 * 1000


def test_devices_whose_power_was_cut_caught_up(run: dict[str, Any]) -> None:
    s = run["summary"]
    cuts = run["truth"].events(kind="power_cut")
    assert len(cuts) == s.power_cuts == 3
    assert s.resets.get("power") == 3
    for cut in cuts:
        records = run["records"][cut["d"]]
        device = run["devices"][cut["d"]]
        # It came back and said why it had restarted ...
        assert device["reported"]["reset_cause"] == "power"
        assert device["reported"]["resets"] >= 1
        # ... and whatever it wrote before and after the cut is in the cloud, in order, once.
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
        assert device["last_seq"] == len(records)


def test_the_products_consent_decides_what_reaches_the_cloud(run: dict[str, Any]) -> None:
    tiers = {d: tier for d, _, tier in run["plan"]}
    for device_id, records in run["records"].items():
        names = {name for r in records for name in r.get("m") or {}}
        if tiers[device_id] == "essential":
            assert not [r for r in records if r.get("m")], device_id
        if tiers[device_id] != "personal":
            assert "heart_rate" not in names and "reps" not in names, device_id


def _power(records: list[dict[str, Any]], low: int, high: int) -> list[float]:
    return [r["m"]["power"] for r in records
            if low <= r["t"] < high and "power" in r.get("m") or {}]


def test_a_pushed_target_power_changes_the_riders_power_as_the_truth_says(
        run: dict[str, Any]) -> None:
    pushed = run["pushed_ms"]
    settle = pushed + 5 * 86400 * 1000  # the push reaches the devices within wall seconds
    truth: Truth = run["truth"]
    rides = truth.events(kind="ride")
    later = [e for e in rides if e["t"] >= settle and e.get("samples", 1)]
    assert later, "rides after the push"
    # When the push reaches a bike depends on the machine's load (wall seconds are simulated
    # days): each bike that rode after it ends up riding to the pushed target, and once it
    # does, it never goes back.
    for bike in {e["d"] for e in later}:
        mine = sorted((e for e in rides if e["d"] == bike and e.get("samples", 1)),
                      key=lambda e: e["t"])
        first = next((i for i, e in enumerate(mine) if e["target_power_w"] == TARGET_W), None)
        assert first is not None, f"{bike} never rode to the pushed target"
        assert all(e["target_power_w"] == TARGET_W for e in mine[first:]), bike
    assert all(e["target_power_w"] == 0 for e in rides if e["t"] < pushed)
    before: list[float] = []
    after: list[float] = []
    for device_id, records in run["records"].items():
        if device_id.startswith("bike-"):
            before += _power(records, 0, pushed)
            after += _power(records, settle, 1 << 62)
    assert len(before) > 50 and len(after) > 50
    # Free rides spread over the riders' own levels (FTP 120-320 W, each at their effort and
    # that day's form); under the target the samples gather at it (a ride's warm-up and a
    # fading rider's slack aside). Measured as the median distance from the target.
    off_before, off_after = _off(before, TARGET_W), _off(after, TARGET_W)
    assert abs(statistics.median(after) - TARGET_W) < 0.1 * TARGET_W, "riders hold the target"
    assert off_after < 0.1 * TARGET_W, f"samples {off_after} W from the target after the push"
    assert off_before > 3 * off_after, (
        f"samples {off_before} W from the target before the push, {off_after} W after")


def _off(powers: list[float], target: float) -> float:
    """The median distance of the samples from the target (W)."""
    return statistics.median(abs(p - target) for p in powers)


def test_the_truth_file_names_every_device_and_its_traits(run: dict[str, Any]) -> None:
    truth: Truth = run["truth"]
    assert sorted(truth.devices) == sorted(d for d, _, _ in run["plan"])
    engines = [d for d, p, _ in run["plan"] if p == "engine"]
    assert all(truth.events(kind="trajectory", device=d) for d in engines)


def test_simulated_engines_replay_only_units_the_shipped_model_never_saw(
        run: dict[str, Any]) -> None:
    truth: Truth = run["truth"]
    trajectories = truth.events(kind="trajectory")
    assert trajectories
    assert {e["unit"] for e in trajectories} <= set(FLEET_UNITS)
    assert not {e["unit"] for e in trajectories} & set(TRAIN_UNITS)
    # and what the cloud stored says the same: no record of a training unit
    for device, records in run["records"].items():
        if device.startswith("engine-"):
            units = {r["m"]["engine_unit"] for r in records if "engine_unit" in (r.get("m") or {})}
            assert units <= set(FLEET_UNITS), device


@pytest.mark.parametrize(("args", "message"), [
    (["--devices", "0"], "--devices must be at least 1"),
    (["--devices", "-5"], "--devices must be at least 1"),
    (["--devices", "5", "--speed", "0"], "--speed must be more than 0"),
    (["--devices", "5", "--mix", "bike=0.7,mirror=0.7"], "add up to 1"),
    (["--devices", "5", "--mix", "bike=1.2,mirror=-0.2"], "between 0 and 1"),
    (["--devices", "5", "--mix", "toaster=1"], "unknown product 'toaster'"),
    (["--devices", "5", "--weeks", "0"], "--weeks must be more than 0"),
    (["--devices", "5", "--cloud", "http://127.0.0.1:9", "--gateway", "localhost:9",
      "--home", ".", "--token-file", "/dev/null"], "unreachable"),
])
def test_bad_requests_are_refused_before_anything_starts(tmp_path: Path, args: list[str],
                                                         message: str) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([*CLI, "fleet", "simulate", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split())
    assert not out.exists(), "nothing was started or written"


def test_ctrl_c_stops_every_process_and_still_prints_the_counts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "fleet", "simulate", "--devices", "6", "--weeks", "4",
                             "--speed", "2000", "--out", str(out), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not _simulating(out):
            time.sleep(0.3)
        assert _simulating(out), "the devices started"
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        stdout, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in pids_mentioning(str(out)):  # its cloud and gateway run in sessions of their own
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["devices"] == 6
    assert summary["sampled"] >= 0 and "lost" in summary
    assert pids_mentioning(str(out)) == [], "no process of the run is left"


def _simulating(out: Path) -> bool:
    """Devices are running once one has written a record: a segment on its flash, or, when the
    gateway acked it so fast that the segment is already gone, an ack in the buffer's meta."""
    buffers = list((out / "home" / "devices").glob("*/data/buffer"))
    return any(any(b.glob("seg-*.log")) or _acked(b) for b in buffers)


def _acked(buffer: Path) -> bool:
    try:
        return json.loads((buffer / "meta.json").read_text()).get("acked", 0) > 0
    except (OSError, ValueError):
        return False

