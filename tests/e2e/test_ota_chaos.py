"""Power cuts in the middle of updates on the whole stack, many times (`make chaos`; about
fifteen minutes): bikes on real MicroPython behind a real gateway take one version after
another, and each loses its power (kill -9 of its runner) at a random moment of each update
(while downloading, verifying, installing, switching or in its trial boot), then comes back.
Every update must end committed and counted a success by the cloud, and no record may be lost.

OTA_CHAOS_TRIALS (default 100) power cuts in all, OTA_CHAOS_SEED picks the moments."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleetloop.stack import Stack, seqs_of, wait_records

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ota import build, events, rollout, words  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

BIKES = ["bike-1", "bike-2", "bike-3", "bike-4"]
MOMENTS = ("downloading", "stopping", "checked", "verified", "switched", "start")


def _cut_when(stack: Stack, bike: str, moment: str, after: int) -> bool:
    """True once the bike's log shows `moment` of the current update (its events past
    `after`)."""
    seen = events(stack, bike)[after:]
    for e in seen:
        if moment == "start" and e.get("event") == "start" and e.get("slot") == "b":
            return True
        if e.get("event") == "update" and e.get("status") == moment:
            return True
    return False


def test_power_cuts_at_random_moments_of_many_updates(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trials = int(os.environ.get("OTA_CHAOS_TRIALS", "100"))
    rng = random.Random(int(os.environ.get("OTA_CHAOS_SEED", "1")))
    monkeypatch.setenv("FLEETLOOP_OTA_POLL_S", "0.5")
    stack.start_path(BIKES)
    for bike in BIKES:
        stack.start_device(bike, "bike", interval_ms=500, heartbeat_s=5)
    for bike in BIKES:
        wait_records(stack, bike, 2)
    cuts = 0
    round_no = 0
    while cuts < trials:
        round_no += 1
        version = f"0.{round_no + 1}.0"
        bundle = build(stack, tmp_path, version,
                       ("profiles/bike.py", '"""', f'"""Version {version}. '))
        key = rollout(stack, "upload", str(bundle))["key"]
        marks = {b: len(events(stack, b)) for b in BIKES}
        plan = {b: rng.choice(MOMENTS) for b in BIKES}
        rid = rollout(stack, "create", "--bundle", key, *[a for b in BIKES for a in ("--device", b)],
                      "--waves", "100", "--soak", "10s", "--threshold", "100%",
                      "--deadline", "300s")["id"]
        pending = dict(plan)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for bike, moment in list(pending.items()):
                if _cut_when(stack, bike, moment, marks[bike]):
                    stack.devices[bike].kill9()
                    stack.start_device(bike, "bike", interval_ms=500, heartbeat_s=5,
                                       consent=None)
                    del pending[bike]
                    cuts += 1
            state = words(stack, rid)
            if state[""]["state"] == "completed":
                break
            time.sleep(0.2)
        state = words(stack, rid)
        assert state[""]["state"] == "completed", _stuck(stack, state, plan, marks)
        for bike in BIKES:
            assert state[bike]["word"] == "success", (version, plan, state[bike])
            boot = json.loads((stack.home / "devices" / bike / "fw" / "boot.json").read_text())
            assert boot[boot["active"]] == version and "trial" not in boot, (plan, boot)
    for bike in BIKES:
        seqs = seqs_of(wait_records(stack, bike, 2))
        assert seqs == list(range(1, len(seqs) + 1)), f"{bike}: a gap"


def _stuck(stack: Stack, state: dict[str, Any], plan: dict[str, str],
           marks: dict[str, int]) -> str:
    """What a bike the rollout still waits for says about itself: its words, the moment it
    was cut at, its slot file, its update status and its update events of this round."""
    out = [json.dumps({b: state[b]["word"] for b in BIKES})]
    for bike in BIKES:
        if state[bike]["word"] == "success":
            continue
        image = stack.home / "devices" / bike
        out.append(f"{bike} cut at {plan[bike]!r}")
        for name in ("fw/boot.json", "data/ota/status.json", "data/ota/offer.json"):
            path = image / name
            out.append(f"  {name}: " + (path.read_text().strip() if path.exists() else "-"))
        out += ["  " + json.dumps(e) for e in events(stack, bike)[marks[bike]:]
                if e.get("event") in ("update", "start", "restart", "reset", "stopped")]
    return "\n".join(out)
