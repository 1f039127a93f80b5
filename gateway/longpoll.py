"""The gateway's side of the cloud's long-poll (GET /api/v1/gateway/watch): one held request at
a time, answered when something changed or after `hold_s`.

The request runs in a daemon thread of its own and the caller waits on it in short steps, so a
stopping gateway never waits for the cloud's answer (the thread ends with the answer or the
process). A cloud without the endpoint (404/405) or an unreachable one raises LongPollError:
the caller then falls back to polling at its fixed interval.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.errors import GatewayError
from gateway.uplink import read_token

WATCH_PATH = "/api/v1/gateway/watch"
_QUICK_S = 1.0  # an answer sooner than this without a change: the cloud does not hold
_OFF_S = 600.0  # after a 404/405 (a cloud without the endpoint), ask again this much later


class LongPollError(GatewayError):
    """The held request failed; poll at the fixed interval for a while."""


class NoLongPoll(LongPollError):
    """The cloud has no watch endpoint (an older cloud): the fixed polls are all there is, and
    that is no fault to report."""


class LongPoll:
    def __init__(self, cloud_url: str, token_path: Path, hold_s: float,
                 timeout_s: float = 10.0) -> None:
        self._url = cloud_url.rstrip("/") + WATCH_PATH
        self._token_path = token_path
        self._hold_s = hold_s
        self._timeout_s = timeout_s
        self._off_until = 0.0  # monotonic time before which the cloud is taken not to hold

    @property
    def enabled(self) -> bool:
        return self._hold_s > 0 and time.monotonic() >= self._off_until

    def ask(self, params: dict[str, Any], stop: threading.Event,
            hold: bool | float = True) -> dict[str, Any] | None:
        """The cloud's answer, held up to hold_s (`hold`=False: at once; a number: at most
        that many seconds); None when `stop` is set first. LongPollError when the request
        fails."""
        token = read_token(self._token_path)
        if token is None:
            raise LongPollError(f"no gateway token in {self._token_path}")
        if hold is True:
            wait = self._hold_s
        elif hold is False:
            wait = 0.0
        else:
            wait = max(0.0, min(self._hold_s, hold))
        box: dict[str, Any] = {}
        done = threading.Event()
        http = httpx.Client(timeout=wait + self._timeout_s)

        def call() -> None:
            try:
                box["resp"] = http.get(self._url, params={**params, "wait": wait},
                                       headers={"Authorization": f"Bearer {token}"})
            except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: closed on stop
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=call, name="long-poll", daemon=True).start()
        try:
            while not done.wait(0.2):
                if stop.is_set():
                    return None
        finally:
            http.close()  # on stop: the cloud sees the connection go and ends the hold
        if "error" in box:
            exc = box["error"]
            raise LongPollError(f"cloud unreachable: {type(exc).__name__}: {exc}")
        resp: httpx.Response = box["resp"]
        if resp.status_code in (404, 405):
            self._off_until = time.monotonic() + _OFF_S
            raise NoLongPoll(f"the cloud has no {WATCH_PATH} (an older cloud): polling every "
                             "few seconds instead")
        if not resp.is_success:
            raise LongPollError(f"watch answered {resp.status_code}: {resp.text[:200]}")
        try:
            answer = resp.json()
        except ValueError as exc:
            raise LongPollError("watch answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise LongPollError("watch answer is not an object")
        return answer

    def wait_for(self, params: dict[str, Any], changed: Any, stop: threading.Event,
                 within_s: float | None = None) -> bool:
        """Ask again and again until `changed(answer)` is true (True), or stop (False), or
        `within_s` seconds went by (True: the caller's safety poll is due). Raises
        LongPollError, also for a cloud that answers at once without a change twice in a row
        (it does not hold: poll at the fixed interval instead)."""
        quick = 0
        end = None if within_s is None else time.monotonic() + within_s
        while not stop.is_set():
            started = time.monotonic()
            if end is not None and started >= end:
                return True
            hold = self._hold_s if end is None else min(self._hold_s, end - started)
            answer = self.ask(params, stop, hold)
            if answer is None:
                return False
            if changed(answer):
                return True
            # An answer sooner than asked and sooner than _QUICK_S: the cloud did not hold (a
            # short hold asked for, the end of `within_s`, is no sign of that).
            quick = quick + 1 if hold >= _QUICK_S and time.monotonic() - started < _QUICK_S \
                else 0
            if quick >= 2:
                self._off_until = time.monotonic() + _OFF_S
                raise LongPollError("the cloud answers the watch at once: not holding")
        return False
