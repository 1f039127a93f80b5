"""Fixtures of the gateway tests. Every process or thread a test starts is stopped in a
finalizer; the logs of child processes are printed when a test fails."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gwkit import (  # noqa: E402
    DEVICES,
    GATEWAY,
    ROOT,
    TOKEN,
    Child,
    Device,
    FakeCloud,
    RunningGateway,
    batch_public_key,
    connect_device,
    wait_for,
)

from gateway import app as gateway_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402

try:
    from fwtool import keys as fw_keys
except ImportError:  # not installed: import it from the source tree
    sys.path.insert(0, str(ROOT / "firmware-tools"))
    from fwtool import keys as fw_keys

@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("keys-home")
    fw_keys.generate(home, [GATEWAY], list(DEVICES))
    return home / "keys"

@pytest.fixture
def home(tmp_path: Path, keys_dir: Path) -> Path:
    """A fresh FLEETLOOP_HOME with the session's keys and the gateway token."""
    h = tmp_path / "home"
    shutil.copytree(keys_dir, h / "keys")
    token = h / "gateways" / GATEWAY / "token"
    token.parent.mkdir(parents=True)
    token.write_text(TOKEN + "\n")
    return h

@pytest.fixture
def devices() -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(home: Path, device_id: str, port: int, **kw: Any) -> Device:
        dev = connect_device(home, device_id, port, **kw)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.client.disconnect()
        dev.client.loop_stop()

@pytest.fixture
def cloud(home: Path) -> Iterator[FakeCloud]:
    c = FakeCloud(batch_public_key(home)).start()
    yield c
    c.stop()

@pytest.fixture
def run_gateway() -> Iterator[Callable[..., RunningGateway]]:
    """Start `gateway.app.run` in a thread (the real composition root); stopped at teardown."""
    started: list[RunningGateway] = []

    def start(settings: Settings) -> RunningGateway:
        stop = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            try:
                gateway_app.run(settings, stop)
            except BaseException as exc:  # surfaced by the test through gw.errors
                errors.append(exc)

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        gw = RunningGateway(settings, stop, thread, errors)
        started.append(gw)

        def ready() -> bool:
            if errors:
                raise errors[0]
            try:
                st = gw.status()
            except Exception:
                return False
            return bool(st["broker"]["up"] and st["ingest"]["link"] == "up")

        wait_for(ready, 20, "gateway up")
        return gw

    yield start
    for gw in started:
        gw.stop()

@pytest.fixture
def children(request: pytest.FixtureRequest) -> Iterator[Callable[..., Child]]:
    made: list[Child] = []

    def start(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Child:
        child = Child(argv, log_path, env).start()
        made.append(child)
        return child

    yield start
    failed = getattr(request.node, "rep_call", None)
    for child in made:
        child.stop()
        if failed is not None and failed.failed:
            print(f"\n===== {' '.join(child.argv[:4])} =====\n{child.log()}")

