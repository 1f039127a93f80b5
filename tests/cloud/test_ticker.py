"""The cloud's own clock: jobs run without anyone calling an endpoint, and one that fails keeps
its turn (a bad rollout or policy must not stop the others)."""

from __future__ import annotations

import threading
from contextlib import nullcontext

import pytest

from cloud.errors import SettingsError
from cloud.settings import Settings
from cloud.ticker import Job, Ticker


def test_a_failing_job_runs_again_and_others_keep_their_turn() -> None:
    seen: list[int] = []
    both = threading.Event()

    def bad(store: object, now_ms: int) -> None:
        raise RuntimeError("one bad rollout")

    def good(store: object, now_ms: int) -> None:
        seen.append(now_ms)
        if len(seen) >= 3:
            both.set()

    ticker = Ticker([Job("bad", 0.01, bad), Job("good", 0.01, good)],
                    lambda: nullcontext(object()), clock=lambda: 12.345)  # type: ignore[arg-type]
    ticker.start()
    try:
        assert both.wait(5), "the good job stopped running after the bad one failed"
    finally:
        ticker.stop()
    assert ticker.runs["bad"] >= 2 and seen[0] == 12345


def test_tick_setting_is_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert Settings.load(home=tmp_path, env={"FLEETLOOP_CLOUD_TICK_S": "0"}).tick_s == 0
    for bad in ("soon", "-1", "1e9"):
        with pytest.raises(SettingsError, match="FLEETLOOP_CLOUD_TICK_S"):
            Settings.load(home=tmp_path, env={"FLEETLOOP_CLOUD_TICK_S": bad})
