"""Sample-to-queryable latency: from the moment a device writes a record to its buffer to the
moment the cloud's telemetry API returns it, on a few probe devices while the whole fleet runs.

Each probe device's board notes the wall time of every record it writes (Board.put_times);
a thread asks the cloud for each probe's new records (the telemetry API's cursor) every
POLL_S, and a record's latency is when it first came back less when it was written. The
resolution is POLL_S; the probes' queries are part of the load they measure.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from fleetloop.fleet.board import Board

POLL_S = 0.2


class LatencyProbe:
    def __init__(self, cloud_url: str, token: str, boards: list[Board]) -> None:
        self.boards = boards
        self.client = httpx.Client(base_url=cloud_url,
                                   headers={"Authorization": f"Bearer {token}"}, timeout=10)
        self.latencies_s: list[float] = []  # written on the device -> queryable
        self.from_send_s: list[float] = []  # first sent by the device -> queryable
        self.errors = 0
        self._cursor: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)
        for board in boards:
            board.put_times = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            for board in self.boards:
                try:
                    self._poll(board)
                except httpx.HTTPError:
                    self.errors += 1

    def _poll(self, board: Board) -> None:
        params: dict[str, int] = {"limit": 1000}
        cursor = self._cursor.get(board.device_id)
        if cursor is not None:
            params["after_incarnation"], params["after_seq"] = cursor
        resp = self.client.get(f"/api/v1/devices/{board.device_id}/telemetry", params=params)
        if resp.status_code == 404:
            return
        resp.raise_for_status()
        seen = time.monotonic()
        records = resp.json()["records"]
        times = board.put_times
        assert times is not None  # set in __init__
        for r in records:
            seq = int(r["seq"])
            written = times.pop(seq, None)
            if written is not None:
                self.latencies_s.append(seen - written)
            sent = board.sent_times.pop(seq, None)
            if sent is not None:
                self.from_send_s.append(seen - sent)
        if records:
            self._cursor[board.device_id] = (int(records[-1]["incarnation"]),
                                             int(records[-1]["seq"]))

    def percentiles(self) -> dict[str, float | int | None]:
        """p50/p99/max from written (the sample) and from first sent, in ms."""
        out: dict[str, float | int | None] = {"records": len(self.latencies_s),
                                              "poll_ms": int(POLL_S * 1000)}
        for name, values in (("", self.latencies_s), ("sent_", self.from_send_s)):
            ordered = sorted(values)
            for label, q in (("p50_ms", 0.50), ("p99_ms", 0.99), ("max_ms", 1.0)):
                out[name + label] = (round(ordered[min(len(ordered) - 1, int(q * len(ordered)))]
                                           * 1000, 1) if ordered else None)
        return out
