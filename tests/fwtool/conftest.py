"""Shared fixtures of the fwtool tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

_spec = importlib.util.find_spec("fwtool")
if _spec is None or _spec.origin is None:  # not installed, or shadowed by this tests/fwtool dir
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware-tools"))

from fwtool.keys import generate  # noqa: E402

from fleetloop.procs import free_port  # noqa: E402

GATEWAYS = ("gw-1",)
DEVICES = ("bike-1", "mirror-1")


@pytest.fixture(scope="session")
def keyed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FLEETLOOP_HOME with keys for gw-1, bike-1 and mirror-1 (shared: do not modify)."""
    home = tmp_path_factory.mktemp("home")
    generate(home, GATEWAYS, DEVICES)
    return home

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"




def have_mosquitto() -> bool:
    return os.access(MOSQUITTO, os.X_OK)


@contextmanager
def tls_broker(keys: Path, workdir: Path) -> Iterator[tuple[int, Path]]:
    """Start Mosquitto on a free port requiring client certs; yield (port, log path)."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    log = workdir / "mosquitto.log"
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"listener {port} 127.0.0.1",
        f"cafile {keys / 'ca.crt.pem'}",
        f"certfile {keys / 'broker.crt.pem'}",
        f"keyfile {keys / 'broker.key.pem'}",
        "require_certificate true",
        "use_identity_as_username true",
        "log_type all",
    ]
    if os.geteuid() == 0:
        lines.insert(0, "user root")
    conf.write_text("\n".join(lines) + "\n")
    with open(log, "wb") as out:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_listening(port, proc, log)
        yield port, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port}:\n{log.read_text()}")


BrokerFactory = Callable[[Path, Path], AbstractContextManager[tuple[int, Path]]]


@pytest.fixture
def broker_factory() -> BrokerFactory:
    """``with broker_factory(keys_dir, workdir) as (port, log):`` a TLS Mosquitto (skips if absent)."""
    if not have_mosquitto():
        pytest.skip("mosquitto not installed")
    return tls_broker
