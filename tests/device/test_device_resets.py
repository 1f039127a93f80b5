"""A device never dies for good: every failure ends in a reset a board would do, with back-off,
and the cause reaches the operator. Real MicroPython processes under fleetloop's device runner
(the host's stand-in for a board's reset circuit, power and watchdog)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from devkit import (
    REPO,
    Gateway,
    Mosquitto,
    free_port,
    make_image,
    press_consent,
    stop_process,
    wait_for,
    wait_state,
)

from device import agent as device_agent
from device import main as device_main
from fleetloop import device_runner
from protocol import bounds

pytestmark = pytest.mark.e2e
HERE = Path(__file__).resolve().parent


class Board:
    """One image run by the device runner; its stdout event lines (the agent's and the
    runner's own "restart" lines) are collected with the time each arrived."""

    def __init__(self, image: Path, heap: str = "64K", watchdog_s: float = 30.0) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.stderr_path = image / f"board-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "board.py"), str(image), heap, str(watchdog_s)],
            env=env, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "wb"),
            start_new_session=True)
        self.events: list[dict] = []
        self.times: list[float] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.times.append(time.monotonic())
            self.events.append(json.loads(line))  # every line is one JSON object

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == name]

    def wait(self, name: str, count: int = 1, timeout: float = 20) -> list[dict]:
        def enough() -> list[dict] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited {self.proc.returncode}: {self.events}\n"
                                     + self.stderr_path.read_text(errors="replace"))
            found = self.named(name)
            return found if len(found) >= count else None

        return wait_for(enough, timeout, f"{count} {name} events")  # type: ignore[return-value]

    def stop(self) -> None:
        stop_process(self.proc)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def boards(request: pytest.FixtureRequest):  # noqa: ANN201
    started: list[Board] = []
    yield started
    for b in started:
        b.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for b in started:
            print("--- events:", *b.events, sep="\n")
            print("--- stderr:\n" + b.stderr_path.read_text(errors="replace"))


def _state(gateway: Gateway, **match: object) -> dict:
    return wait_state(gateway, **match)


def test_runner_and_device_agree_on_exit_codes_and_the_watchdog() -> None:
    assert (device_main._EXIT_REQUESTED, device_main._EXIT_MEMORY, device_main._EXIT_CRASH) == (
        device_runner.EXIT_REQUESTED, device_runner.EXIT_MEMORY, device_runner.EXIT_CRASH)
    assert device_main._WATCHDOG_MS == device_runner.WATCHDOG_S * 1000
    # The one literal copy, for a heap too small to import main's own modules:
    assert f"sys.exit({device_runner.EXIT_MEMORY})" in (REPO / "device" / "main.py").read_text()
    # A healthy agent says something several times per watchdog period.
    assert device_agent._ALIVE_MS * 3 <= device_runner.WATCHDOG_S * 1000
    assert [device_runner.backoff_s(n) for n in (1, 2, 3, 6, 50)] == [1, 2, 4, 30, 30]
    causes = {device_runner.cause_of_exit(code, False) for code in (75, 76, 77, 1, -9)}
    assert causes == {"requested", "memory", "crash"}
    assert device_runner.cause_of_exit(-9, True) == "watchdog"
    from protocol import state
    assert {"none", "power", "watchdog", "memory", "crash", "requested"} == set(state.RESET_CAUSES)
    assert bounds.MAX_DOWNLINK_BYTES == 640


def test_a_heap_too_small_for_the_agent_resets_with_backoff(
        home: Path, tmp_path: Path, boards: list[Board]) -> None:
    # 24 KB: the agent's own objects cannot be built. Before, this exited 1 and stayed dead.
    image = make_image(home, tmp_path / "img", "bike-1", "bike", free_port())
    board = Board(image, heap="24K")
    boards.append(board)
    starts = board.wait("start", count=3, timeout=15)
    assert [(s["reset_cause"], s["resets"]) for s in starts[:3]] == [
        ("none", 0), ("memory", 1), ("memory", 2)]
    resets = board.named("reset")
    assert resets[0]["cause"] == "memory" and "memory allocation failed" in resets[0]["why"]
    restarts = board.named("restart")
    assert [(r["cause"], r["exit"], r["after_s"]) for r in restarts[:2]] == [
        ("memory", 76, 1.0), ("memory", 76, 2.0)]
    at = [board.times[board.events.index(s)] for s in starts[:3]]
    assert at[1] - at[0] >= 0.9 and at[2] - at[1] >= 1.9, f"not backed off: {at}"


@pytest.mark.parametrize(("fault", "code"), [("memory", 76), ("crash", 77)])
def test_an_injected_failure_resets_and_the_cause_reaches_the_state(
        fault: str, code: int, home: Path, tmp_path: Path, broker: Mosquitto, gateway: Gateway,
        boards: list[Board]) -> None:
    image = make_image(home, tmp_path / "img", "bike-1", "bike", broker.port)
    (image / "data").mkdir(exist_ok=True)
    (image / "data" / "fault").write_text(fault)  # test hook: MemoryError / an exception, once
    board = Board(image)
    boards.append(board)
    state = _state(gateway, d="bike-1", reset_cause=fault)
    assert state["resets"] == 1
    restart = board.named("restart")[0]
    assert (restart["cause"], restart["exit"]) == (fault, code)
    assert board.named("reset")[0]["why"] == "injected by a test"


def test_a_hung_agent_is_reset_by_the_watchdog_and_a_healthy_one_is_not(
        home: Path, tmp_path: Path, broker: Mosquitto, gateway: Gateway,
        boards: list[Board]) -> None:
    image = make_image(home, tmp_path / "img", "bike-1", "bike", broker.port)
    (image / "data").mkdir(exist_ok=True)
    (image / "data" / "fault").write_text("hang")  # alive but silent
    board = Board(image, watchdog_s=3)
    boards.append(board)
    restart = board.wait("restart")[0]
    assert (restart["cause"], restart["resets"]) == ("watchdog", 1)
    _state(gateway, d="bike-1", reset_cause="watchdog", resets=1)
    # The restarted agent is healthy: it outlives the 3 s watchdog by its "alive" lines.
    after = len(board.events)
    wait_for(lambda: len([e for e in board.events[after:] if e["event"] == "alive"]) >= 2, 10,
             "two alive lines")
    assert len(board.named("restart")) == 1


def test_a_power_cut_and_a_failing_connect_are_reported(
        home: Path, tmp_path: Path, boards: list[Board]) -> None:
    broker = Mosquitto(home / "keys", tmp_path / "broker")
    broker.port = free_port()  # nothing listens yet: every connect is refused
    image = make_image(home, tmp_path / "img", "bike-1", "bike", broker.port)
    first = Board(image)
    boards.append(first)
    assert first.wait("start")[0]["reset_cause"] == "none"
    first.kill9()  # the runner itself dies: the device loses power
    second = Board(image)
    boards.append(second)
    start = second.wait("start")[0]
    assert (start["reset_cause"], start["resets"]) == ("power", 1)
    down = second.wait("disconnected")[0]
    assert down["reason"].startswith("connect failed"), down
    try:
        broker.start(same_port=True)
        gateway = Gateway(home / "keys", broker.port).start()
        try:
            state = _state(gateway, d="bike-1", reset_cause="power")
            assert state["link_failures"] >= 1 and state["link_error"].startswith("connect failed")
        finally:
            gateway.stop()
    finally:
        second.stop()
        broker.stop()
    assert second.proc.returncode == 143, "SIGTERM is passed on and ends the runner"
    third = Board(image)  # after a clean stop: a plain start, the count kept
    boards.append(third)
    start = third.wait("start")[0]
    assert (start["reset_cause"], start["resets"]) == ("none", 1)


def test_a_downlink_larger_than_the_limit_is_reported_too_large(
        home: Path, tmp_path: Path, broker: Mosquitto, gateway: Gateway,
        boards: list[Board]) -> None:
    image = make_image(home, tmp_path / "img", "bike-1", "bike", broker.port)
    press_consent(image, "usage")  # records to keep flowing (a new device buffers none)
    board = Board(image)
    boards.append(board)
    _state(gateway, d="bike-1")
    size = bounds.MAX_DOWNLINK_BYTES + 60
    gateway.publish_config("bike-1", b'{"v":1,"body":"' + b"x" * (size - 17) + b'"}')
    state = _state(gateway, d="bike-1", config_status="rejected")
    assert state["reason"] == f"too large ({size} > {bounds.MAX_DOWNLINK_BYTES})"
    # ...and the device carries on: it keeps its link and its records flowing.
    n = len(gateway.seqs("bike-1"))
    wait_for(lambda: len(gateway.seqs("bike-1")) > n + 2, 15, "records after the big config")
