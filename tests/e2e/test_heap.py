"""The device-heap budget, short: a profile runs at 56 KB of real MicroPython heap through the
real stack (sampling, a signed config applied, a broker restart survived, every record acked
and in the cloud exactly once, no reset, no MemoryError). `make bench` runs the 60 s version
for every profile and bisects the smallest heap each runs at."""

from __future__ import annotations

import pytest

from fleetloop.bench import HEAP_REQUIRED_KB, heap_round, judge
from fleetloop.stack import Stack

pytestmark = pytest.mark.e2e


def test_the_engine_runs_at_56_kb_through_a_real_gateway(stack: Stack) -> None:
    # The engine is the profile with the least room (its trajectory reader and the largest
    # records); bike and mirror have ~5 KB more at their lowest.
    stack.start_path([])
    [trial] = heap_round(stack, [("engine", HEAP_REQUIRED_KB)], seconds=6, interval_ms=250,
                         tag="t")
    assert trial.runs, trial.why
    assert trial.config_applied and trial.reconnected
    assert trial.records >= 20 and trial.lowest_free is not None and trial.lowest_free > 0


LOG = "\n".join([
    '{"event": "boot", "heap_free": 20000, "acked": 0}',
    '{"event": "config", "status": "applied", "version": 1}',
    '{"event": "disconnected", "reason": "io error 104"}',
    '{"event": "connected", "connects": 2}',
    '{"event": "drained", "acked": 3, "heap_min": 7000, "heap_rest": 15000}',
])


def test_judge_counts_a_run_only_when_everything_happened() -> None:
    ok = judge(LOG, 3, [1, 2, 3], alive=True)
    assert ok.runs and ok.lowest_free == 7000 and ok.boot_free == 20000
    oom = '  File "device/codec.py", line 1, in encode_record\nMemoryError: memory allocation failed'
    assert judge(LOG + "\n" + oom, 3, [1, 2, 3], True).why == (
        'MemoryError: memory allocation failed (File "device/codec.py", line 1, in encode_record)')
    assert "reset" in judge(LOG + '\n{"event": "reset", "why": "x"}', 3, [1, 2, 3], True).why
    assert "exited" in judge(LOG, 3, [1, 2, 3], alive=False).why
    restarted = '{"event": "start", "resets": 1, "reset_cause": "watchdog"}\n' + LOG
    assert "restarted" in judge(restarted, 3, [1, 2, 3], True).why
    assert "acked" in judge(LOG, 4, [1, 2, 3, 4], True).why
    assert "cloud holds" in judge(LOG, 3, [1, 3, 3], True).why
    no_reconnect = LOG.replace('"disconnected"', '"noted"')
    assert "reconnect" in judge(no_reconnect, 3, [1, 2, 3], True).why
    assert "config" in judge(LOG.replace('"applied"', '"rejected"'), 3, [1, 2, 3], True).why
