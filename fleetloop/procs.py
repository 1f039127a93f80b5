"""Child processes the demo and the tests start: each in its own session, its output in a log
file, stopped with SIGTERM then SIGKILL. One helper for every process, so nothing is left
running and every failure comes with the log of what ran."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class ProcessError(RuntimeError):
    """A child did not start, or did not become ready in time."""


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (never a well-known default)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (e.g. a state directory): how tests and
    the demo prove nothing they started is left running."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(int(entry.name))
    return found


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Process:
        # Logs carry device ids and values (personal data): owner-only, like the databases.
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.log_path.parent, 0o700)
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                        "ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise ProcessError(f"{self.name} was never started")
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until the log matches `pattern`; fail early if the process exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.log())
            if match:
                return match
            if not self.alive:
                raise ProcessError(f"{self.name} exited before {pattern!r}:\n{self.tail()}")
            time.sleep(0.05)
        raise ProcessError(f"{self.name}: no {pattern!r} within {timeout}s:\n{self.tail()}")

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill9(self) -> None:
        """Power cut: SIGKILL to the process alone (its children stay, as they would)."""
        if self.popen is not None and self.alive:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the whole session, then SIGKILL what is left; returns the exit code."""
        if self.popen is None:
            return None
        if self.alive:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        # Children left in the session (e.g. after a kill9 of the parent) go too.
        self.signal_group(signal.SIGKILL)
        return self.popen.returncode


@dataclass
class Supervisor:
    """Starts processes and stops them in reverse order of starting."""

    processes: list[Process] = field(default_factory=list)

    def start(self, process: Process) -> Process:
        self.processes.append(process.start())
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} ({p.log_path})\n{p.tail(60)}" for p in self.processes)
