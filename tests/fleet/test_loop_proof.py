"""The optimisation loop's proof on a small simulated fleet (fleetloop.bench_loop; the big run
is `fleetloop bench loop`). Simulated bikes run the real device code through a real gateway
and its Mosquitto to a real cloud; once two weeks of data exist, an ops token starts a helpful
policy (coach mode on) and a harmful one (a target power no rider sustains) on two disjoint
cohorts through the HTTP API, and the cloud judges them by itself on record time. Scored
against the simulator's truth: the helpful policy is kept with its measured lift inside the
truth's range, the harmful one is reverted at its first evaluation and every rider it hurt
recovers, the churn-risk list is scored, and no record is lost.

Its size is about the smallest that stays decisive. Each run is a fresh draw of the same
people (their day-by-day dice follow the calendar), and the random split's imbalance moves
the measured lift by about one standard error: 180 riders give coach mode's +0.4 - 0.7 rides a
week room to be kept at the first or second 14-day window, and 120 give the target's -1.0 -
1.2 rides a week room to be reverted at the first (with 60, one run in three drew a split
unlucky enough to extend). Sampling every ten minutes while in use keeps the records few:
rides are counted, not their minutes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetloop.bench_loop import HARMFUL, HELPFUL, LoopPlan, bench_loop

PLAN = LoopPlan(bikes=304, mirrors=6, engines=2, weeks=7, speed=70_000, seed=3,
                helpful=180, harmful=120, start_week=2, window_days=14, max_extensions=2,
                churn_week=5, interval_ms=600_000, timeout_s=300)


def test_the_loop_keeps_what_helps_and_reverts_what_hurts(tmp_path: Path) -> None:
    """One run, every check (one test: under pytest-xdist a module fixture would run the
    fleet once per worker)."""
    proof = bench_loop(PLAN, out=tmp_path / "sim")
    no_record_is_lost(proof)
    the_helpful_policy_is_kept_with_its_lift_inside_the_truths_range(proof)
    the_harmful_policy_is_reverted_within_one_window(proof)
    every_decision_is_in_the_audit_log_as_the_systems(proof)
    the_churn_risk_list_is_scored_against_the_truth(proof)


def no_record_is_lost(proof: dict[str, Any]) -> None:
    assert proof["complete"], proof
    assert proof["lost"] == 0 and proof["duplicates"] == 0
    assert proof["stored"] >= proof["sampled"] > 5000
    assert not proof["errors"]


def the_helpful_policy_is_kept_with_its_lift_inside_the_truths_range(
        proof: dict[str, Any]) -> None:
    h = proof["helpful"]
    assert h["state"] == "kept" and h["decision"] == "keep" and h["evaluations"] <= 2, h
    assert h["ci_low"] > 0
    truth = h["truth"]
    assert truth["low"] <= h["lift"] <= truth["high"], h
    assert truth["effect"] > 0 and truth["changed"] > 0
    assert truth["replay_mismatches"] == 0, "the replay repeats what the control really did"
    # The cloud read about what a perfect measurement of the same arms reads. Not exactly: on
    # a loaded machine a device that fell behind the data clock skips to it when it restarts
    # for the config, which can cut a ride in two (the cloud then counts two).
    assert abs(h["measurement_error"]) < 0.25, h
    # Kept: the change goes to the control too, through the signed path (every control rider
    # who rode once it had time to arrive rode coached).
    assert h["control_coached_after_keep"] == h["control_rode_after_keep"], h
    if h["evaluations"] == 1:
        assert h["control_rode_after_keep"] > 10, h


def the_harmful_policy_is_reverted_within_one_window(proof: dict[str, Any]) -> None:
    h = proof["harmful"]
    assert h["state"] == "reverted" and h["evaluations"] == 1 and h["decision"] == "revert", h
    assert h["ci_high"] < 0
    assert h["truth"]["low"] <= h["lift"] <= h["truth"]["high"], h
    assert h["truth"]["effect"] < 0 and abs(h["measurement_error"]) < 0.25, h
    # Every rider it overreached got back to normal: the revert reached each of them.
    assert h["harmed"] >= 0.8 * h["treatment"] and h["recovered"] == h["harmed"], h


def every_decision_is_in_the_audit_log_as_the_systems(proof: dict[str, Any]) -> None:
    actions = {(e["action"], e["actor"]) for e in proof["audit"]}
    assert ("policy.keep", "system") in actions and ("policy.revert", "system") in actions
    states = proof["states"]
    assert [s for s, _ in states[HELPFUL]] == ["running", "kept"]  # extend keeps it running
    assert [s for s, _ in states[HARMFUL]] == ["running", "reverted"]


def the_churn_risk_list_is_scored_against_the_truth(proof: dict[str, Any]) -> None:
    c = proof["churn"]
    assert c["week"] == PLAN.churn_week and c["people"] == PLAN.bikes + PLAN.mirrors
    assert c["scored"] > 0.8 * c["people"] and c["positives"] > 0
    assert 0.0 <= c["precision"] <= 1.0 and 0.0 <= c["recall"] <= 1.0
    # every person in one group: reached by coaching, by the over-hard target, or by neither
    groups = c["groups"]
    assert set(groups) <= {"coached", "target power", "no change"} and "coached" in groups
    for key in ("scored", "positives", "listed", "true_positives"):
        assert sum(g[key] for g in groups.values()) == c[key], key


@pytest.mark.parametrize(("args", "reason"), [
    (["--bikes", "10", "--helpful", "8", "--harmful", "8"], "are more than the fleet's 10 bikes"),
    (["--start-week", "1", "--window-days", "14"], "need a window's worth of data"),
    (["--weeks", "6", "--start-week", "4"], "leaves no time to judge within 6 weeks"),
    (["--churn-week", "11"], "the churn list's week must be in 2..10"),
])
def test_an_impossible_proof_is_refused_before_anything_starts(args: list[str],
                                                               reason: str) -> None:
    out = subprocess.run([sys.executable, "-m", "fleetloop", "bench", "loop", *args,
                          "--no-write"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert reason in out.stderr
