"""The gateway's own Mosquitto as a supervised child process.

The child gets PR_SET_PDEATHSIG (SIGTERM) so a kill -9 of the gateway ends it too, and every
start first stops any Mosquitto still running with *our* config file (found through the pid file
and /proc), so a broker left from an earlier run never holds the port. A watcher restarts the
broker whenever it dies and counts the restarts.
"""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gateway import procs
from gateway.broker_config import BrokerConfig, write_config
from gateway.errors import BrokerError

log = logging.getLogger("fleetloop.gateway.broker")

_LOG_ROTATE_BYTES = 8 * 1024 * 1024


def _runs_our_config(pid: int, cfg: BrokerConfig) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (bool(argv) and argv[0].endswith(b"mosquitto")
            and str(cfg.conf_path).encode() in argv and procs.pid_alive(pid))


def stale_broker_pids(cfg: BrokerConfig) -> list[int]:
    """Live mosquitto processes started with our config file: the one in our pid file, and any
    other (found in /proc) in case the pid file was lost. Nobody else's broker is touched."""
    found: list[int] = []
    try:
        found.append(int(cfg.pid_path.read_text().strip()))
    except (OSError, ValueError):
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found.append(int(entry.name))
    me = os.getpid()
    return sorted({pid for pid in found if pid > 1 and pid != me and _runs_our_config(pid, cfg)})


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class BrokerState(enum.Enum):
    DOWN = "down"
    STARTING = "starting"
    UP = "up"
    STOPPED = "stopped"


@dataclass(frozen=True)
class BrokerStatus:
    up: bool
    pid: int | None
    port: int
    restarts: int
    state: str
    replaced_stale: int | None

    def to_obj(self) -> dict[str, object]:
        return {"up": self.up, "pid": self.pid, "port": self.port, "restarts": self.restarts,
                "state": self.state, "replaced_stale_pid": self.replaced_stale}


class Broker:
    """Writes the config, runs Mosquitto as a child, restarts it if it dies, stops it."""

    def __init__(self, cfg: BrokerConfig, binary: str, ready_timeout_s: float = 10.0,
                 restart_max_s: float = 10.0) -> None:
        self._cfg = cfg
        self._binary = binary
        self._ready_timeout_s = ready_timeout_s
        self._restart_max_s = restart_max_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._state = BrokerState.DOWN
        self._restarts = 0
        self._restarting = False  # restart() is replacing the child: the watcher waits
        self._replaced: int | None = None

    @property
    def config(self) -> BrokerConfig:
        return self._cfg

    def status(self) -> BrokerStatus:
        with self._lock:
            proc = self._proc
            up = self._state is BrokerState.UP and proc is not None and proc.poll() is None
            return BrokerStatus(up=up, pid=proc.pid if proc else None, port=self._cfg.port,
                                restarts=self._restarts, state=self._state.value,
                                replaced_stale=self._replaced)

    def start(self) -> None:
        """Replace a stale broker of ours, write the config, start, wait until the port accepts."""
        for stale in stale_broker_pids(self._cfg):
            log.warning("stopping mosquitto pid %d left from an earlier run", stale)
            try:
                procs.terminate_pid(stale)
            except procs.ProcessStopError as exc:
                raise BrokerError(f"a mosquitto left from an earlier run would not stop: {exc}") from exc
            self._replaced = stale
        write_config(self._cfg)
        self._spawn()

    def restart(self) -> None:
        """Write the config again and replace the running broker with a new one (Mosquitto
        2.0 reads its CRL only at start, not on SIGHUP). Clients reconnect; sessions and
        queued messages survive in its persistence. BrokerError when it does not come back
        (the watcher then keeps trying)."""
        with self._lock:
            if self._state is BrokerState.STOPPED:
                return
            self._restarting = True
            proc = self._proc
        try:
            write_config(self._cfg)
            if proc is not None:
                self._kill(proc)
            self._spawn()
            log.info("mosquitto restarted with a new config")
        finally:
            with self._lock:
                self._restarting = False

    def _spawn(self) -> None:
        cfg = self._cfg
        self._rotate_log()
        with self._lock:
            if self._state is BrokerState.STOPPED:
                return
            self._state = BrokerState.STARTING
            with os.fdopen(os.open(cfg.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                           "ab") as logf:
                try:
                    proc = subprocess.Popen(
                        [self._binary, "-c", str(cfg.conf_path)],
                        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                        start_new_session=True, preexec_fn=procs.die_with_parent(),
                    )
                except OSError as exc:
                    self._state = BrokerState.DOWN
                    raise BrokerError(f"cannot start {self._binary}: {exc}") from exc
            self._proc = proc
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._state is BrokerState.STOPPED:
                    return
            if proc.poll() is not None:
                with self._lock:
                    self._state = BrokerState.DOWN
                raise BrokerError(
                    f"mosquitto exited with code {proc.returncode} at start "
                    f"(port {cfg.port}); its log {cfg.log_path} ends with:\n{_tail(cfg.log_path)}"
                )
            if procs.listens_on(proc.pid, cfg.port):
                with self._lock:
                    self._state = BrokerState.UP
                log.info("mosquitto pid %d listening on %s:%d", proc.pid, cfg.bind, cfg.port)
                return
            time.sleep(0.02)
        self._kill(proc)
        with self._lock:
            self._state = BrokerState.DOWN
        raise BrokerError(f"mosquitto did not accept connections on port {cfg.port} within "
                          f"{self._ready_timeout_s:.0f}s:\n{_tail(cfg.log_path)}")

    def _rotate_log(self) -> None:
        path = self._cfg.log_path
        try:
            if path.stat().st_size > _LOG_ROTATE_BYTES:
                os.replace(path, path.with_suffix(".log.1"))
        except OSError:
            pass

    def run(self, stop: threading.Event) -> None:
        """Watch the child until `stop` is set; restart it (with backoff) whenever it dies."""
        delay = 0.2
        while not stop.wait(0.2):
            with self._lock:
                proc = self._proc
                stopped = self._state is BrokerState.STOPPED
                restarting = self._restarting
            if stopped or restarting or proc is None or proc.poll() is None:
                continue
            log.error("mosquitto pid %d exited with code %s; restarting in %.1fs:\n%s",
                      proc.pid, proc.returncode, delay, _tail(self._cfg.log_path, 5))
            with self._lock:
                self._state = BrokerState.DOWN
            if stop.wait(delay):
                return
            with self._lock:
                if self._state is BrokerState.STOPPED:
                    return
                if self._restarting or self._proc is not proc:
                    continue  # restart() replaced it meanwhile
                self._restarts += 1
            try:
                self._spawn()
                delay = 0.2
            except BrokerError as exc:
                log.error("%s", exc)
                delay = min(delay * 2, self._restart_max_s)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._state = BrokerState.STOPPED
            proc = self._proc
        if proc is not None:
            self._kill(proc, timeout)
            log.info("mosquitto pid %d stopped", proc.pid)
        try:
            if self._cfg.pid_path.read_text().strip() == str(proc.pid if proc else ""):
                self._cfg.pid_path.unlink()
        except OSError:
            pass

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
