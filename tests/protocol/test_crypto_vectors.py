"""Published vectors for the device's own crypto: RFC 8032 Ed25519 (protocol.ed25519.verify) and
FIPS 180-4 SHA-512 (protocol.sha512), under CPython and the real MicroPython interpreter.

The JSON comes from tests/vectors/make_vectors.py; these tests also re-check it against
`cryptography` and hashlib, so the vectors cannot drift from the reference implementations.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from vectorkit import INTERPRETERS, load, run_script

from protocol import ed25519, sha512

L = 2**252 + 27742317777372353535851937790883648493
FIELDS = ("public_key", "message", "signature")


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_crypto_vectors_pass_on_both_interpreters(interpreter: str) -> None:
    out = run_script("mp_crypto_vectors.py", interpreter)
    assert f"crypto vectors ok on {interpreter}" in out
    # MicroPython's hashlib has no sha512: there the pure-Python code is what digest runs.
    path = "pure" if interpreter == "micropython" else "native"
    assert f"digest is {path}" in out
    assert "ed25519 5 valid" in out


def test_ed25519_vectors_agree_with_cryptography() -> None:
    v = load("ed25519.json")
    names = [case["name"] for case in v["valid"]]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    for case in v["valid"]:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(case["secret_key"]))
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        message = bytes.fromhex(case["message"])
        assert public.hex() == case["public_key"], case["name"]
        assert key.sign(message).hex() == case["signature"], case["name"]
        assert ed25519.verify(public, message, bytes.fromhex(case["signature"])), case["name"]
    by_name = {case["name"]: case for case in v["valid"]}
    assert len(bytes.fromhex(by_name["TEST 1024"]["message"])) == 1023
    assert by_name["TEST SHA(abc)"]["message"] == hashlib.sha512(b"abc").hexdigest()
    for case in v["invalid"]:
        public, message, signature = (bytes.fromhex(case[f]) for f in FIELDS)
        with pytest.raises((InvalidSignature, ValueError)):
            Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        assert not ed25519.verify(public, message, signature), (case["of"], case["why"])


def test_ed25519_refusals_each_change_one_thing() -> None:
    v = load("ed25519.json")
    base = {case["name"]: case for case in v["valid"]}
    whys = {case["why"] for case in v["invalid"]}
    assert {"message bit flipped", "signature R bit flipped", "signature S bit flipped",
            "public key bit flipped", "non-canonical S (S + L)", "S = L"} <= whys
    for case in v["invalid"]:
        orig = base[case["of"]]
        changed = [f for f in FIELDS if case[f] != orig[f]]
        assert len(changed) == 1, case
        new, old = bytes.fromhex(case[changed[0]]), bytes.fromhex(orig[changed[0]])
        if "bit flipped" in case["why"]:
            flipped = int.from_bytes(new, "little") ^ int.from_bytes(old, "little")
            assert len(new) == len(old) and bin(flipped).count("1") == 1, case
        if "S" in case["why"] and "bit" not in case["why"]:
            assert changed == ["signature"] and new[:32] == old[:32]
            s_new, s_old = (int.from_bytes(b[32:], "little") for b in (new, old))
            assert s_new >= L  # refused by the verifier's range check
            if case["why"] == "non-canonical S (S + L)":
                # S + L works in the curve equation like S: only the range check refuses it.
                assert s_new - s_old == L


def test_sha512_vectors_agree_with_hashlib_and_the_pure_code() -> None:
    v = load("sha512.json")
    names = [case["name"] for case in v["vectors"]]
    assert names[:4] == ["empty", "abc", "448 bits", "896 bits"]
    assert any(len(case["message"]) // 2 > 1024 for case in v["vectors"])
    assert sha512._native is not None  # on CPython digest() is hashlib's; _pure is checked too
    for case in v["vectors"]:
        message, digest = bytes.fromhex(case["message"]), bytes.fromhex(case["digest"])
        assert hashlib.sha512(message).digest() == digest, case["name"]
        assert sha512._pure(message) == digest, case["name"]
        assert sha512.digest(message) == digest, case["name"]
