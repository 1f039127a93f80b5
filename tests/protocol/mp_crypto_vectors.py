# Checks the device's own crypto against published vectors (RFC 8032 Ed25519, FIPS 180-4
# SHA-512). Runs under MicroPython and CPython alike (no pytest there):
# `micropython tests/protocol/mp_crypto_vectors.py VECTORS_DIR`.
# MicroPython's hashlib has no sha512, so there sha512.digest is the pure-Python code; on
# CPython digest is hashlib's and sha512._pure is checked on its own.
import binascii
import json
import sys

from protocol import ed25519, sha512


def load(directory, name):
    with open(directory + "/" + name) as f:
        return json.load(f)


def unhex(text):
    return binascii.unhexlify(text)


def check_sha512(v):
    for case in v["vectors"]:
        message = unhex(case["message"])
        want = unhex(case["digest"])
        if sha512._pure(message) != want:
            raise AssertionError("sha512._pure differs: " + case["name"])
        if sha512.digest(message) != want:
            raise AssertionError("sha512.digest differs: " + case["name"])
    return len(v["vectors"])


def check_ed25519(v):
    for case in v["valid"]:
        if not ed25519.verify(unhex(case["public_key"]), unhex(case["message"]),
                              unhex(case["signature"])):
            raise AssertionError("ed25519 refuses RFC 8032 " + case["name"])
    for case in v["invalid"]:
        if ed25519.verify(unhex(case["public_key"]), unhex(case["message"]),
                          unhex(case["signature"])):
            raise AssertionError("ed25519 accepts " + case["of"] + ", " + case["why"])
    return len(v["valid"]), len(v["invalid"])


def main(directory):
    n_sha = check_sha512(load(directory, "sha512.json"))
    n_ok, n_bad = check_ed25519(load(directory, "ed25519.json"))
    path = "pure" if sha512._native is None else "native"
    print("crypto vectors ok on %s: sha512 %d (digest is %s), ed25519 %d valid, %d refused" % (
        sys.implementation.name, n_sha, path, n_ok, n_bad))


main(sys.argv[1])
