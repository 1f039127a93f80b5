"""Fixtures of the device tests: interpreters, signed config envelopes, keys, a TLS Mosquitto,
a provisioned 64 KB MicroPython image, and a paho "gateway" that acks."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol import config

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: our helpers

from devkit import MOSQUITTO, REPO, Device, Gateway, Mosquitto  # noqa: E402


def sign_body(key: Ed25519PrivateKey, body: dict) -> bytes:
    """An envelope for any body, even one protocol.config.seal would refuse to build."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    sig = base64.b64encode(key.sign(text.encode())).decode()
    return json.dumps({"v": 1, "body": text, "sig": sig}, separators=(",", ":")).encode()


def write_configs(directory: Path, key: Ed25519PrivateKey | None = None,
                  device: str = "bike-1") -> Ed25519PrivateKey:
    """config.pub + the envelopes t_config.py offers to the device."""
    key = key or Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (directory / "config.pub").write_bytes(pub)

    def body(version: int, settings: dict, dev: str = device, issued: int = 1) -> dict:
        return {"device": dev, "version": version, "issued": issued, "settings": settings}

    envs = {
        "env_v1.json": config.seal(body(1, {"interval_ms": 900}), key.sign),
        "env_v2.json": config.seal(body(2, {"interval_ms": 500, "max_inflight": 4}), key.sign),
        "env_v2_again.json": config.seal(body(2, {"interval_ms": 700}, issued=2), key.sign),
        "env_v3.json": config.seal(body(3, {"interval_ms": 250}), key.sign),
        "env_other.json": config.seal(body(5, {"interval_ms": 500}, "mirror-1"), key.sign),
        "env_bad_setting.json": sign_body(key, body(6, {"interval_ms": 5})),
    }
    for version, tier in ((3, "usage"), (4, "usage"), (5, "personal"), (3, "essential")):
        consent_body = dict(body(version, {"interval_ms": 300}), consent=tier)
        envs[f"env_consent_{version}_{tier}.json"] = config.seal(consent_body, key.sign)
    forged = Ed25519PrivateKey.generate()
    envs["env_bad_sig.json"] = config.seal(body(4, {"interval_ms": 100}), forged.sign)
    for name, data in envs.items():
        (directory / name).write_bytes(data)
    return key


@pytest.fixture(scope="session")
def unit_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATADIR for mp_runner: shared vectors + signed envelopes."""
    d = tmp_path_factory.mktemp("device-data")
    for f in (REPO / "tests" / "vectors").glob("*.json"):
        shutil.copy(f, d / f.name)
    write_configs(d)
    return d


# ---- integration fixtures ------------------------------------------------------------------
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
_spec = importlib.util.find_spec("fwtool")
if _spec is None or _spec.origin is None:  # shadowed by tests/fwtool (a namespace package)
    sys.path.insert(0, str(REPO / "firmware-tools"))

DEVICES = ("bike-1", "mirror-1", "engine-1")


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FLEETLOOP_HOME with keys for gw-1 and the test devices (fwtool.keys)."""
    from fwtool.keys import generate

    h = tmp_path_factory.mktemp("home")
    generate(h, ["gw-1"], list(DEVICES))
    return h


@pytest.fixture
def broker(home: Path, tmp_path: Path) -> Iterator[Mosquitto]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    b = Mosquitto(home / "keys", tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def gateway(home: Path, broker: Mosquitto) -> Iterator[Gateway]:
    g = Gateway(home / "keys", broker.port).start()
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def devices(request: pytest.FixtureRequest) -> Iterator[list[Device]]:
    """Collects Device processes; stops them (and shows their output on failure)."""
    started: list[Device] = []
    yield started
    for d in started:
        d.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for d in started:
            print("--- device events:", *d.events, sep="\n")
            print("--- device stderr:\n" + d.stderr())
