"""Free space under the gateway's state, and whether ingest may take (and ack) data now.

Ingest acks a message only after its commit, so when the disk cannot take the commit the right
answer is to stop acking: the broker keeps the messages in the gateway's session and the
devices keep their records in their own buffers until space returns. Two things pause it:
- free space under the state directory below `min_free_bytes` (checked every `interval_s`,
  and before each commit): the gateway stops before SQLite fails, so the broker's persistence,
  the logs and a technician's `diag --bundle` still find room;
- a write that failed for lack of space (SQLITE_FULL, ENOSPC) although statvfs shows room
  (a quota, the last blocks of a tiny filesystem): paused until a commit succeeds again.
Either way it resumes by itself; nothing is dropped to make room (that is the spool budget's
job, gateway.spool_budget, and it only ever drops whole sealed batches, reported upstream).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("fleetloop.gateway.disk")

StatVfs = Callable[[Path], os.statvfs_result]


@dataclass(frozen=True)
class Space:
    free_bytes: int  # available to this (unprivileged-equivalent) user
    total_bytes: int


def space_of(path: Path, statvfs: StatVfs = os.statvfs) -> Space:
    st = statvfs(path)
    return Space(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def is_out_of_space(exc: BaseException) -> bool:
    """True for SQLite's "database or disk is full" and the OS's ENOSPC/EDQUOT."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    cause = exc.__cause__
    return cause is not None and is_out_of_space(cause)


def rewrite_in_place(path: Path, text: str) -> bool:
    """Overwrite a small existing file without allocating: the new text goes into the bytes
    the file already has (padded with spaces, which JSON readers skip). For run.json on a full
    disk, where the usual write-a-temporary-and-rename needs a free block. False when it does
    not fit or the file is missing."""
    data = text.encode()
    try:
        size = path.stat().st_size
        if len(data) > size:
            return False
        with open(path, "r+b") as fh:
            fh.write(data.ljust(size - 1) + b"\n" if size > len(data) else data)
    except OSError:
        return False
    return True


class DiskGuard:
    """Watches the free space of the filesystem holding `path` (the gateway's directory)."""

    def __init__(self, path: Path, min_free_bytes: int, interval_s: float = 1.0,
                 statvfs: StatVfs = os.statvfs) -> None:
        self._path = path
        self._min_free = min_free_bytes
        self._interval_s = interval_s
        self._statvfs = statvfs
        self._lock = threading.Lock()
        self._space: Space | None = None
        self._write_error: str | None = None  # a failed write for lack of space, until one works
        self._pauses = 0

    def check(self) -> Space | None:
        """Read the free space now (None when the directory cannot be stat'ed)."""
        try:
            space = space_of(self._path, self._statvfs)
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self._path, exc)
            return None
        with self._lock:
            was = self._reason_locked()
            self._space = space
            now = self._reason_locked()
        self._log_change(was, now)
        return space

    def low_space(self) -> str | None:
        """Why a commit must wait for space now (the floor), else None. A fresh reading."""
        space = self.check()
        if space is not None and (space.free_bytes < self._min_free or space.free_bytes == 0):
            return self._floor_reason(space)
        return None

    def write_failed(self, exc: BaseException) -> bool:
        """Note a failed write; True when it failed for lack of space (the pause is then on)."""
        if not is_out_of_space(exc):
            return False
        with self._lock:
            was = self._reason_locked()
            self._write_error = f"disk full: {exc} (writing under {self._path})"
            now = self._reason_locked()
        self._log_change(was, now)
        return True

    def wrote(self, exc: BaseException | None) -> None:
        """A write's outcome (what ingest reports after each commit)."""
        if exc is None:
            self.write_ok()
        else:
            self.write_failed(exc)

    def write_ok(self) -> None:
        with self._lock:
            if self._write_error is None:
                return
            was = self._reason_locked()
            self._write_error = None
            now = self._reason_locked()
        self._log_change(was, now)

    @property
    def paused_reason(self) -> str | None:
        with self._lock:
            return self._reason_locked()

    def status(self) -> dict[str, Any]:
        with self._lock:
            space = self._space
            full = self._reason_locked() is not None
        return {"path": str(self._path),
                "free_bytes": space.free_bytes if space else None,
                "total_bytes": space.total_bytes if space else None,
                "min_free_bytes": self._min_free, "full": full, "pauses": self._pauses}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.check()
            stop.wait(self._interval_s)

    # -- helpers -----------------------------------------------------------------------------
    def _floor_reason(self, space: Space) -> str:
        return (f"disk full: {space.free_bytes} bytes free under {self._path} "
                f"(the gateway keeps at least {self._min_free})")

    def _reason_locked(self) -> str | None:
        if self._write_error is not None:
            return self._write_error
        if self._space is not None and (self._space.free_bytes < self._min_free
                                        or self._space.free_bytes == 0):
            return self._floor_reason(self._space)
        return None

    def _log_change(self, was: str | None, now: str | None) -> None:
        if was is None and now is not None:
            with self._lock:
                self._pauses += 1
            log.error("%s: ingest stops acknowledging (devices keep their records) until "
                      "space returns", now)
        elif was is not None and now is None:
            log.warning("disk space is back: ingest acknowledges again")
