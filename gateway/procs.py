"""Linux process and port helpers for supervising a child (PR_SET_PDEATHSIG, /proc)."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ProcessStopError(OSError):
    """A process would not die, even after SIGKILL."""


def die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when the thread that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: nothing to load in the child
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def raise_open_files(wanted: int = 65536) -> int:
    """Lift this process's open-file limit towards `wanted`; the processes it starts (its
    Mosquitto: a socket per device) inherit it. As root the hard limit is raised too. Returns
    the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return min(wanted, hard)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[0]
    return state not in (b"Z", b"X")


def terminate_pid(pid: int, timeout: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.02)
    raise ProcessStopError(f"could not stop pid {pid}")


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def listens_on(pid: int, port: int) -> bool:
    """True once process `pid` itself holds a listening socket on `port` (Linux /proc): a port
    that accepts could belong to someone else."""
    wanted = _listening_inodes(port)
    if not wanted:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in wanted:
            return True
    return False
