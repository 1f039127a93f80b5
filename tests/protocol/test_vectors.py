"""The shared wire vectors, checked by the protocol codecs under CPython and MicroPython."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from vectorkit import INTERPRETERS, load, run_script

from protocol import batch


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_device_codecs_agree_with_vectors(interpreter: str) -> None:
    # Source files compile on the heap: this checks agreement, the heap budget is measured on
    # compiled images (tests/e2e/test_heap.py, fleetloop bench heap).
    assert f"vectors ok on {interpreter}" in run_script("mp_vectors.py", interpreter, "256K")


def test_batch_chain_vectors_verify_and_reproduce() -> None:
    v = load("batches.json")
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

    v = load("batches.json")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(v["public_key"]))
    link = v["chain"][0]
    tampered = link["canonical"].replace('\\"reps\\":12', '\\"reps\\":13').encode()
    assert tampered != link["canonical"].encode()
    with pytest.raises(batch.BatchError, match="bad signature"):
        batch.open_sealed(zlib.compress(tampered), link["signature"], key)
