"""A simulated board never dies for good: whatever its product's code raises ends in a reset
a board would do (the cause on "flash", a back-off, a new start that reports it), and the
loop goes on. No broker here: the link keeps failing to connect, as with a site's gateway down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

from fwtool.batch import Row, provision_many

from fleetloop.fleet.board import Board, Counters
from fleetloop.fleet.clock import FleetClock
from fleetloop.fleet.stream import Reactor
from fleetloop.procs import free_port


class Faulty:
    """A product whose sensor driver fails on its first reading, then works."""

    product = "bike"

    def __init__(self, error: BaseException) -> None:
        self.error: BaseException | None = error
        self.samples = 0

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> dict[str, float] | None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self.samples += 1
        return {"power": 150.0}

    def rest_ms(self, t_ms: int, settings: Mapping[str, int]) -> int:
        return 60_000


def _board(tmp_path: Path, behaviour: Faulty) -> Board:
    result = provision_many(tmp_path, [Row("bike-1", "bike")], "localhost", free_port(),
                            firmware=False)
    assert result.ok, result.failures
    (tmp_path / "devices" / "bike-1" / "data").mkdir(exist_ok=True)
    (tmp_path / "devices" / "bike-1" / "data" / "consent.request").write_text(
        '{"tier":"usage"}')
    fleet = FleetClock(span_ms=86_400_000, speed=1000.0)
    fleet.start()
    return Board(tmp_path / "devices" / "bike-1", behaviour, fleet, Reactor(), Counters(),
                 {"interval_ms": 60_000})


def _step_for(board: Board, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, board.step())))


def _reset_file(board: Board) -> dict[str, object]:
    return dict(json.loads((board.image / "data" / "reset.json").read_text()))


def test_a_crash_in_the_product_code_is_a_reset_with_its_cause_then_a_new_start(
        tmp_path: Path) -> None:
    behaviour = Faulty(RuntimeError("sensor bus stuck"))
    board = _board(tmp_path, behaviour)
    board.step()
    assert board.agent is None, "the board reset"
    assert board.counters.resets == {"crash": 1}
    assert _reset_file(board) == {"cause": "crash", "count": 1}
    _step_for(board, 2.5)  # the first back-off is about a second
    assert board.agent is not None, "and started again"
    assert board.cause == ("crash", 1), "the new start reports why it happened"
    assert board.agent.boot[0] == "crash"
    assert behaviour.samples >= 1 and board.agent.buf.last >= 2  # consent record + samples


def test_a_memory_error_is_a_memory_reset(tmp_path: Path) -> None:
    board = _board(tmp_path, Faulty(MemoryError("fragmented")))
    board.step()
    assert board.counters.resets == {"memory": 1}
    assert _reset_file(board)["cause"] == "memory"
    _step_for(board, 2.5)
    assert board.agent is not None and board.agent.boot[0] == "memory"


class Riding:
    """A product in use all the time: a sample at every tick, its data time noted."""

    product = "bike"

    def __init__(self) -> None:
        self.times: list[int] = []

    def sample(self, t_ms: int, settings: Mapping[str, int]) -> dict[str, float] | None:
        self.times.append(t_ms)
        return {"power": 150.0}

    def rest_ms(self, t_ms: int, settings: Mapping[str, int]) -> int:
        return 60_000


def test_a_board_behind_the_fleet_restarts_for_a_config_from_its_own_data_time(
        tmp_path: Path) -> None:
    """On a loaded machine a board runs behind the fleet's data clock and catches up tick by
    tick. A restart for a config takes a board a second: it goes on from the tick it had
    reached, not from the fleet's time, which would skip the hours it was behind (rides in
    them went unmeasured: the loop's proof lost rides around each policy decision)."""
    behaviour = Riding()
    board = _board(tmp_path, behaviour)
    board.step()  # boots and samples
    assert board.agent is not None and behaviour.times
    board.fleet._wall0 -= 6 * 3600 / board.fleet.speed  # the fleet is six hours ahead
    board.step()  # catches up a few ticks, hours still to go
    behind = board.fleet.now() - behaviour.times[-1]
    assert behind > 3 * 3_600_000
    board.agent.stop = "config"  # a config came: the agent leaves its loop for main.py's restart
    _step_for(board, 1.0)
    assert board.agent is not None, "restarted"
    gaps = [b - a for a, b in zip(behaviour.times, behaviour.times[1:], strict=False)]
    assert max(gaps) <= 2 * 60_000, f"a gap of {max(gaps) / 3_600_000:.1f} h in the samples"


def test_a_fleet_that_takes_long_to_boot_still_measures_from_the_span_s_start(
        tmp_path: Path) -> None:
    """Every product is on from the start of the span: a board whose first start comes
    wall seconds (hours of data time) after the fleet's clock began measures from the span's
    start, catching up tick by tick; only a start after being off (a power cut, a reset)
    leaves the time it was off unmeasured."""
    behaviour = Riding()
    board = _board(tmp_path, behaviour)
    board.fleet._wall0 -= 6 * 3600 / board.fleet.speed  # booting the fleet took six hours
    _step_for(board, 0.5)
    assert behaviour.times
    assert behaviour.times[0] - board.fleet.start_ms <= 2 * 60_000
