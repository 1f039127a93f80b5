"""Regenerate the shared wire vectors: `python tests/vectors/make_vectors.py`.

The vectors are golden files: device, gateway and cloud tests all check them, so a change in
any codec that alters the bytes on the wire fails everywhere at once. The signing key below is
a test key made from a fixed seed; it signs nothing but these vectors.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import ack, batch, config, record

HERE = Path(__file__).parent
TEST_SEED = bytes(range(32))


def test_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(TEST_SEED)


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def records() -> dict:
    good = [
        ("bike-1", 1, 1732345678123, {"cadence": 81, "power": 212.5, "heart_rate": 142}),
        ("mirror-7", 42, 0, {"session_active": True, "reps": 12}),
        ("engine-1", 3, 1732345678999, {}),
    ]
    bad = [
        ("not JSON", b"{nope"),
        ("version 2", b'{"v":2,"d":"bike-1","s":1,"t":0,"m":{}}'),
        ("seq 0", b'{"v":1,"d":"bike-1","s":0,"t":0,"m":{}}'),
        ("bool seq", b'{"v":1,"d":"bike-1","s":true,"t":0,"m":{}}'),
        ("wildcard id", b'{"v":1,"d":"bike+1","s":1,"t":0,"m":{}}'),
        ("slash id", b'{"v":1,"d":"a/b","s":1,"t":0,"m":{}}'),
        ("string metric", b'{"v":1,"d":"bike-1","s":1,"t":0,"m":{"x":"1"}}'),
        ("upper-case metric", b'{"v":1,"d":"bike-1","s":1,"t":0,"m":{"X":1}}'),
        ("extra field", b'{"v":1,"d":"bike-1","s":1,"t":0,"m":{},"z":1}'),
        ("negative time", b'{"v":1,"d":"bike-1","s":1,"t":-5,"m":{}}'),
        ("array", b"[1,2]"),
    ]
    return {
        "valid": [
            {"device": d, "seq": s, "t": t, "metrics": m, "wire": record.encode(d, s, t, m).decode()}
            for d, s, t, m in good
        ],
        "invalid": [{"why": why, "wire": wire.decode()} for why, wire in bad],
    }


def acks() -> dict:
    return {
        "valid": [{"seq": n, "wire": ack.encode(n).decode()} for n in (0, 1, 123456789)],
        "invalid": [
            {"why": "negative", "wire": '{"v":1,"seq":-1}'},
            {"why": "string", "wire": '{"v":1,"seq":"3"}'},
            {"why": "no version", "wire": '{"seq":3}'},
            {"why": "not JSON", "wire": "ack"},
        ],
    }


def configs(key: Ed25519PrivateKey) -> dict:
    body = {"device": "bike-1", "version": 3, "issued": 1732345678123, "settings": {"interval_ms": 500}}
    good = config.seal(body, key.sign)
    env = json.loads(good)
    tampered = dict(env, body=env["body"].replace("500", "100"))
    other_key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    forged = config.seal(body, other_key.sign)
    bad_range = dict(body, settings={"interval_ms": 5})
    bad_range_text = json.dumps(bad_range, separators=(",", ":"), sort_keys=True)
    out_of_range = json.dumps(
        {"v": 1, "body": bad_range_text, "sig": base64.b64encode(key.sign(bad_range_text.encode())).decode()},
        separators=(",", ":"), sort_keys=True,
    )
    return {
        "public_key": base64.b64encode(public_raw(key)).decode(),
        "valid": [{"body": body, "wire": good.decode()}],
        "invalid": [
            {"why": "bad signature", "wire": json.dumps(tampered, separators=(",", ":"), sort_keys=True)},
            {"why": "bad signature", "wire": forged.decode()},
            {"why": "setting interval_ms must be an int in 100..3600000", "wire": out_of_range},
            {"why": "config is not JSON", "wire": "{"},
        ],
    }


def batches(key: Ed25519PrivateKey) -> dict:
    recs = [json.loads(v["wire"]) for v in records()["valid"]]
    state = {"v": 1, "d": "bike-1", "t": 1732345678200, "impl": "micropython", "config_version": 3,
             "config_status": "applied", "reason": "", "heap_free": 40211, "buffered": 0,
             "dropped": 0, "seq": 1}
    first = batch.Batch("gw-1", 1, batch.GENESIS, 1732345679000, tuple(recs[:2]), (state,))
    c1 = batch.canonical(first)
    second = batch.Batch("gw-1", 2, batch.digest(c1), 1732345680000, tuple(recs[2:]), ())
    out = []
    for b in (first, second):
        sealed = batch.seal(b, key)
        out.append({
            "canonical": batch.canonical(b).decode(),
            "digest": sealed.digest,
            "signature": sealed.signature,
        })
    return {"public_key": base64.b64encode(public_raw(key)).decode(), "chain": out}


def main() -> None:
    key = test_key()
    files = {
        "records.json": records(),
        "acks.json": acks(),
        "configs.json": configs(key),
        "batches.json": batches(key),
    }
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
