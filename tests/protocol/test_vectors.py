"""The shared wire vectors, checked by the protocol codecs under CPython and MicroPython."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import batch

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
MICROPYTHON = Path(sys.executable).with_name("micropython")


def _load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_device_codecs_agree_with_vectors(interpreter: str) -> None:
    script = str(ROOT / "tests" / "protocol" / "mp_vectors.py")
    if interpreter == "cpython":
        cmd = [sys.executable, script, str(VECTORS)]
    else:
        # Source files compile on the heap: this checks agreement, the heap budget is
        # measured on compiled images (tests/e2e/test_heap.py, fleetloop bench heap).
        cmd = [str(MICROPYTHON), "-X", "heapsize=256K", script, str(VECTORS)]
    env = dict(os.environ, MICROPYPATH=str(ROOT), PYTHONPATH=str(ROOT))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"vectors ok on {interpreter}" in out.stdout


def test_batch_chain_vectors_verify_and_reproduce() -> None:
    v = _load("batches.json")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(v["public_key"]))
    prev = batch.GENESIS
    for link in v["chain"]:
        canon = link["canonical"].encode()
        import zlib

        parsed, digest = batch.open_sealed(zlib.compress(canon), link["signature"], key)
        assert digest == link["digest"]
        assert parsed.prev == prev
        assert batch.canonical(parsed) == canon
        prev = digest


def test_batch_with_a_flipped_byte_is_refused() -> None:
    import zlib

    v = _load("batches.json")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(v["public_key"]))
    link = v["chain"][0]
    tampered = link["canonical"].replace('\\"reps\\":12', '\\"reps\\":13').encode()
    assert tampered != link["canonical"].encode()
    with pytest.raises(batch.BatchError, match="bad signature"):
        batch.open_sealed(zlib.compress(tampered), link["signature"], key)
