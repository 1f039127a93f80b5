"""A rollout behind one gateway, measured (`fleetloop bench ota`): simulated bikes with real
firmware slots (fleetloop.fleet.board: their first stage, download, installer and commit are
the device's own code; the new version's code is not swapped in a simulated device) and a few
bikes on real MicroPython, all behind one gateway and its Mosquitto. Once every device is up,
the benchmark builds the next version, uploads it and rolls it out to all of them in one wave;
it measures the time until the cloud counts the last device a success (after the soak) and how
often the gateway downloaded the bundle from the cloud (the target is once per version)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from fleetloop.fleet.options import Options
from fleetloop.fleet.simulate import Simulation, Throttled


class RolloutScenario:
    """The operator's part: once the fleet is up, build, upload, roll out, watch."""

    def __init__(self, real: int, soak_s: int, tmp: Path, log: Any) -> None:
        self.real = real
        self.soak_s = soak_s
        self.tmp = tmp
        self.log = log
        self.created = 0.0
        self.finished = 0.0
        self.rollout = ""
        self.result: dict[str, Any] = {}
        self.devices: list[str] = []
        self.sim: Simulation | None = None
        self._check = Throttled(self._over, 1.0)

    def __call__(self, sim: Simulation) -> None:
        self.sim = sim
        if not self.created:
            if sum(1 for b in sim.boards if b.up) < len(sim.boards):
                return
            self._start(sim)
        elif not self.finished and self._check():
            self.finished = time.monotonic()
            sim.stop_requested = True

    def _start(self, sim: Simulation) -> None:
        from fwtool.provision import firmware_version, package_dir
        from fwtool.release import build_release

        from protocol import ota

        stack = sim.stack
        assert stack is not None
        stack.keygen([f"bike-real-{i}" for i in range(self.real)])
        for i in range(self.real):
            stack.start_device(f"bike-real-{i}", "bike", interval_ms=5000, heartbeat_s=5)
        major, minor, patch = ota.parse_version(firmware_version(package_dir("device")))
        version = f"{major}.{minor}.{patch + 1}"
        src = self.tmp / "device"
        shutil.copytree(package_dir("device"), src, ignore=shutil.ignore_patterns("__pycache__"))
        profile = src / "profiles" / "bike.py"
        profile.write_text(profile.read_text() + "\n# the next version\n")
        data = build_release(stack.home, "bike", version, device_src=src).data
        self.devices = [b.device_id for b in sim.boards] + \
            [f"bike-real-{i}" for i in range(self.real)]
        with stack.admin() as admin:
            up = admin.post("/api/v1/bundles", content=data,
                            headers={"Content-Type": "application/vnd.fleetloop.bundle"})
            up.raise_for_status()
            stack.wait_until(lambda: self._known(stack), timeout=120,
                             what="the real devices enrolled and on the old version")
            made = admin.post("/api/v1/rollouts", json={
                "bundle": up.json()["key"], "devices": self.devices, "waves": [100],
                "soak_s": self.soak_s, "failure_threshold": 0.05, "deadline_s": 600})
            made.raise_for_status()
        self.rollout = made.json()["id"]
        self.created = time.monotonic()
        self.log(f"rollout {self.rollout} of {version} to {len(self.devices)} devices")

    def _known(self, stack: Any) -> bool:
        with stack.admin() as admin:
            have = {d["id"] for d in admin.get("/api/v1/devices").json()}
        return all(f"bike-real-{i}" in have for i in range(self.real))

    def _over(self) -> bool:
        """The rollout has stopped moving: completed (or paused, aborted)."""
        assert self.sim is not None and self.sim.stack is not None
        with self.sim.stack.admin() as admin:
            self.result = admin.get(f"/api/v1/rollouts/{self.rollout}").json()
        self.log(f"rollout {self.rollout}: {self.result.get('state')} "
                 f"{self.result.get('counts')}")
        over = self.result.get("state") in ("completed", "auto_paused", "aborted")
        if over:
            for d in self.result.get("devices") or []:
                if d["word"] != "success":
                    self.log(f"  {d['device']}: {d['word']} {d['reason']}")
        return over


def bench_rollout(devices: int = 200, real: int = 3, soak_s: int = 10,
                  log: Any = print) -> dict[str, Any]:
    """Roll the next bike version out to `devices` simulated bikes and `real` bikes on real
    MicroPython behind one gateway; the figures of docs/benchmarks.md."""
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-rollout-") as tmp:
        root = Path(tmp)
        options = Options(devices=devices, mix={"bike": 1.0}, speed=1.0, weeks=1.0,
                          out=root / "sim", slots=True, timeout_s=1800, heartbeat_s=5)
        sim = Simulation(options)
        scenario = RolloutScenario(real, soak_s, root, log)
        figures: dict[str, Any] = {}

        def after(s: Simulation) -> None:
            stack = s.stack
            assert stack is not None
            status = stack.gateway_status() or {}
            cache = status.get("updates", {}).get("cache", {})
            figures["cloud_downloads"] = cache.get("cloud_downloads")

        summary = sim.run(scenario, after)
        body = scenario.result
        return {"devices": devices + real, "simulated": devices, "real": real, "soak_s": soak_s,
                "state": body.get("state"), "counts": body.get("counts", {}),
                "finish_s": round(scenario.finished - scenario.created, 1)
                if scenario.finished else None,
                "cloud_downloads": figures.get("cloud_downloads"),
                "lost": summary.lost, "duplicates": summary.duplicates}
