"""One loop for every simulated device: a selector (epoll) for their sockets and a heap of
the moments they asked to be woken.

Why a selector loop rather than threads or asyncio: the device code is the board's, a plain
synchronous poll-driven agent (device.agent.Agent.step, device.link.Link.service). Threads
cost a stack each and the GIL's switching, and top out at a few hundred devices; asyncio
would need the agent rewritten as coroutines, which the board's MicroPython build does not
run the same way. A selector wakes exactly the devices whose socket has data, and the heap the
ones whose timer is due (a sample on the data clock, a keepalive, a back-off), so an idle
device costs nothing between its wake-ups.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable

from fleetloop.fleet.board import Board
from fleetloop.fleet.stream import Reactor

_MAX_SELECT_S = 0.05


class Scheduler:
    def __init__(self, reactor: Reactor, boards: Iterable[Board]) -> None:
        self.reactor = reactor
        self.boards = list(boards)
        self._heap: list[tuple[float, int, Board]] = []
        self._due: dict[int, float] = {}
        self._n = 0
        self.steps = 0
        now = time.monotonic()
        for board in self.boards:
            self._wake(board, now)

    def _wake(self, board: Board, at: float) -> None:
        self._n += 1
        self._due[id(board)] = at
        heapq.heappush(self._heap, (at, self._n, board))

    def _step(self, board: Board) -> None:
        self.steps += 1
        wait = board.step()
        self._wake(board, time.monotonic() + max(0.0, wait))

    def run(self, done: Callable[[], bool], tick: Callable[[], None] | None = None,
            tick_s: float = 0.5) -> None:
        """Step devices until done(); tick() every tick_s (progress, scenario events)."""
        next_tick = time.monotonic()
        heap = self._heap
        while not done():
            now = time.monotonic()
            timeout = min(_MAX_SELECT_S, heap[0][0] - now) if heap else _MAX_SELECT_S
            for stream in self.reactor.poll(timeout):
                self._step(stream.owner)
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                at, _, board = heapq.heappop(heap)
                if self._due.get(id(board)) == at:  # else a newer wake-up replaced this one
                    self._step(board)
            if tick is not None and now >= next_tick:
                next_tick = now + tick_s
                tick()

    def poke(self, board: Board) -> None:
        """Step this device as soon as the loop runs again (it was changed from outside)."""
        self._wake(board, time.monotonic())
