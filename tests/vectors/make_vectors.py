"""Regenerate the shared wire vectors: `python tests/vectors/make_vectors.py`.

The vectors are golden files: device, gateway and cloud tests all check them, so a change in
any codec that alters the bytes on the wire fails everywhere at once. The signing key below is
a test key made from a fixed seed; it signs nothing but these vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import ack, aggregate, batch, config, frame, hint, record, state, tag
from protocol.bounds import MAX_FRAME_BYTES, MAX_FRAME_RECORDS

HERE = Path(__file__).parent
TEST_SEED = bytes(range(32))
# The record key of every device in these vectors (a test key: it tags nothing else).
TEST_RECORD_KEY = bytes(range(32, 64))
TEST_INCARNATION = 1234567

# RFC 4231 section 4 (HMAC-SHA-256): name, key, data, expected HMAC (test case 5 truncates to
# 128 bits, as protocol.tag does). hmac_vectors() checks each with Python's hmac module.
RFC4231 = (
    ("test case 1", b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    ("test case 2", b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("test case 3", b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("test case 4", bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("test case 5", b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    ("test case 6", b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("test case 7", b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data."
     b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


# RFC 8032 section 7.1 (Ed25519): name, SECRET KEY, PUBLIC KEY, MESSAGE, SIGNATURE, as printed
# there. ed25519_vectors() re-derives every public key and signature with `cryptography` and
# stops if a byte differs, so a slip in transcription cannot reach the JSON.
RFC8032_TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)
RFC8032 = (
    ("TEST 1",
     "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
     "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("TEST 2",
     "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
     "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("TEST 3",
     "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
     "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("TEST 1024",
     "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
     RFC8032_TEST_1024_MESSAGE,
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03"),
    ("TEST SHA(abc)",
     "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
)
ED25519_L = 2**252 + 27742317777372353535851937790883648493

# FIPS 180-4 SHA-512 examples (NIST CSRC "Examples with Intermediate Values"): message, digest.
# sha512_vectors() checks each against hashlib. One million "a" is left out: the pure-Python
# SHA-512 takes ~12 s for it on MicroPython; the long multi-block vector below stands in.
FIPS_SHA512 = (
    ("empty", b"",
     "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"),
    ("abc", b"abc",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
    ("448 bits", b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445"),
    ("896 bits",
     b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
     b"klmnopqrlmnopqrsmnopqrstnopqrstu",
     "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"),
)


def test_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(TEST_SEED)


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def record_mac() -> tag.Hmac:
    return tag.Hmac(TEST_RECORD_KEY)


def records() -> dict:
    good = [
        ("bike-1", 1, 1732345678123, {"cadence": 81, "power": 212.5, "heart_rate": 142}),
        ("mirror-7", 42, 0, {"session_active": True, "reps": 12}),
        ("engine-1", 3, 1732345678999, {}),
    ]
    mac = record_mac()
    valid = record.encode("bike-1", TEST_INCARNATION, 1, 0, {"x": 1}, mac)
    bad = [
        ("not JSON", b"{nope"),
        ("version 3", b'{"v":3,"d":"bike-1","s":1,"t":0,"m":{}}'),
        ("version 2 without incarnation or tag", b'{"v":2,"d":"bike-1","s":1,"t":0,"m":{}}'),
        ("version 2 without tag", valid[:valid.rindex(b',"h"')] + b"}"),
        ("short tag", valid[:-4] + b'"}'),
        ("upper-case tag", valid[:-6] + b'ABCD"}'),
        ("tag not last", valid.replace(b'"i":1234567,', b"").replace(b'"}', b'","i":1234567}')),
        ("incarnation 0", valid.replace(b'"i":1234567', b'"i":0')),
        ("seq beyond 2**53-1", b'{"v":1,"d":"bike-1","s":9007199254740992,"t":0,"m":{}}'),
        ("t beyond 2**63", b'{"v":1,"d":"bike-1","s":1,"t":9223372036854775808,"m":{}}'),
        ("seq 0", b'{"v":1,"d":"bike-1","s":0,"t":0,"m":{}}'),
        ("bool seq", b'{"v":1,"d":"bike-1","s":true,"t":0,"m":{}}'),
        ("wildcard id", b'{"v":1,"d":"bike+1","s":1,"t":0,"m":{}}'),
        ("slash id", b'{"v":1,"d":"a/b","s":1,"t":0,"m":{}}'),
        ("string metric", b'{"v":1,"d":"bike-1","s":1,"t":0,"m":{"x":"1"}}'),
        ("upper-case metric", b'{"v":1,"d":"bike-1","s":1,"t":0,"m":{"X":1}}'),
        ("extra field", b'{"v":1,"d":"bike-1","s":1,"t":0,"m":{},"z":1}'),
        ("negative time", b'{"v":1,"d":"bike-1","s":1,"t":-5,"m":{}}'),
        ("array", b"[1,2]"),
        ("unknown consent tier", record.consent_signed_bytes(
            "bike-1", TEST_INCARNATION, 2, 0, "usage", "device", 0).replace(b"usage", b"secret")
         [:-1] + valid[valid.rindex(b',"h"'):]),
        ("unknown consent origin", record.consent_signed_bytes(
            "bike-1", TEST_INCARNATION, 2, 0, "usage", "device", 0).replace(b'"device",', b'"shop",')
         [:-1] + valid[valid.rindex(b',"h"'):]),
        ("consent and metrics", valid.replace(b'"m":{"x":1}', b'"m":{"x":1},"c":{"cfg":0,"origin":"device","tier":"usage"}')),
        ("consent with an extra member", valid.replace(b'"m":{"x":1}', b'"c":{"cfg":0,"origin":"device","tier":"usage","x":1}')),
        ("consent cfg negative", valid.replace(b'"m":{"x":1}', b'"c":{"cfg":-1,"origin":"device","tier":"usage"}')),
    ]
    for why, wire in bad:  # each must really be refused, or it is no vector
        try:
            record.decode(wire)
        except ValueError:
            continue
        raise SystemExit(f"invalid record vector {why!r} is accepted")
    return {
        "record_key": base64.b64encode(TEST_RECORD_KEY).decode(),
        "valid": [
            {"device": d, "incarnation": TEST_INCARNATION, "seq": s, "t": t, "metrics": m,
             "signed": record.signed_bytes(d, TEST_INCARNATION, s, t, m).decode(),
             "wire": record.encode(d, TEST_INCARNATION, s, t, m, mac).decode()}
            for d, s, t, m in good
        ],
        "consent": [
            {"device": d, "incarnation": TEST_INCARNATION, "seq": n, "t": t, "tier": tier,
             "origin": origin, "cfg": cfg,
             "signed": record.consent_signed_bytes(d, TEST_INCARNATION, n, t, tier, origin, cfg).decode(),
             "wire": record.encode_consent(d, TEST_INCARNATION, n, t, tier, origin, cfg, mac).decode()}
            for d, n, t, tier, origin, cfg in (
                ("bike-1", 1, 1732345678000, "personal", "device", 0),
                ("bike-1", 2, 1732345679000, "usage", "cloud", 3),
                ("mirror-7", 9, 1732345680000, "essential", "device", 2147483647),
            )
        ],
        "valid_v1": [
            {"device": d, "seq": s, "t": t, "metrics": m, "wire": record.encode_v1(d, s, t, m).decode()}
            for d, s, t, m in good
        ],
        "invalid": [{"why": why, "wire": wire.decode()} for why, wire in bad],
    }


def states() -> dict:
    fields = {"v": 2, "d": "bike-1", "i": TEST_INCARNATION, "t": 1732345678200,
              "impl": "micropython", "config_version": 3, "config_status": "applied",
              "reason": "", "heap_free": 40211, "buffered": 0, "dropped": 0, "seq": 1, "floor": 2}
    vitals = dict(fields, why="heartbeat", uptime_s=3600, heap_low=6800, buffer_bytes=0,
                  reconnects=2, consent="usage", hint_ms=1500, rssi=-67, reset_cause="none",
                  resets=0, link_error="", link_failures=0, fw="0.1.0", profile="bike")
    mac = record_mac()
    bad = [
        ("heap beyond a GiB", dict(vitals, heap_free=1 << 31)),
        ("uptime of centuries", dict(vitals, uptime_s=10**10)),
        ("unknown consent tier", dict(vitals, consent="everything")),
        ("unknown cause", dict(vitals, why="bored")),
        ("positive rssi", dict(vitals, rssi=5)),
        ("hint beyond ten minutes", dict(vitals, hint_ms=600001)),
        ("negative reconnects", dict(vitals, reconnects=-1)),
    ]
    invalid = []
    for why, obj in bad:
        wire = tag.append(mac, json.dumps(obj, separators=(",", ":")).encode())
        try:
            state.decode(wire)
        except ValueError:
            invalid.append({"why": why, "wire": wire.decode()})
            continue
        raise SystemExit(f"invalid state vector {why!r} is accepted")
    return {"record_key": base64.b64encode(TEST_RECORD_KEY).decode(),
            "valid": [{"fields": f, "wire": state.encode(f, mac).decode()}
                      for f in (fields, vitals)],
            "invalid": invalid}


def hints() -> dict:
    bad = [("negative", b'{"v":1,"min_reconnect_ms":-1}'),
           ("beyond ten minutes", b'{"v":1,"min_reconnect_ms":600001}'),
           ("version 2", b'{"v":2,"min_reconnect_ms":100}'),
           ("extra member", b'{"v":1,"min_reconnect_ms":100,"x":1}'),
           ("float", b'{"v":1,"min_reconnect_ms":100.5}'),
           ("not JSON", b"soon")]
    for why, wire in bad:
        try:
            hint.decode(wire)
        except ValueError:
            continue
        raise SystemExit(f"invalid hint vector {why!r} is accepted")
    return {"topic": hint.TOPIC,
            "valid": [{"min_reconnect_ms": n, "wire": hint.encode(n).decode()}
                      for n in (0, 1500, hint.MAX_HINT_MS)],
            "invalid": [{"why": why, "wire": wire.decode()} for why, wire in bad]}


def hmac_vectors() -> dict:
    out = []
    for name, key, data, want in RFC4231:
        got = hmac.new(key, data, hashlib.sha256).hexdigest()[:len(want)]
        if got != want:
            raise SystemExit(f"RFC 4231 {name}: transcription differs from hmac")
        out.append({"name": name, "key": key.hex(), "data": data.hex(), "hmac": want})
    return {"rfc4231": out}


def acks() -> dict:
    return {
        "valid": [{"incarnation": i, "seq": n, "wire": ack.encode(n, i).decode()}
                  for i, n in ((0, 0), (0, 1), (TEST_INCARNATION, 0), (TEST_INCARNATION, 123456789),
                               (2**31 - 1, 2**53 - 1))],
        "invalid": [
            {"why": "incarnation 0 in version 2", "wire": '{"v":2,"i":0,"seq":1}'},
            {"why": "version 2 without incarnation", "wire": '{"v":2,"seq":1}'},
            {"why": "seq beyond 2**53-1", "wire": '{"v":1,"seq":9007199254740992}'},
            {"why": "negative", "wire": '{"v":1,"seq":-1}'},
            {"why": "string", "wire": '{"v":1,"seq":"3"}'},
            {"why": "no version", "wire": '{"seq":3}'},
            {"why": "not JSON", "wire": "ack"},
        ],
    }


def configs(key: Ed25519PrivateKey) -> dict:
    body = {"device": "bike-1", "version": 3, "issued": 1732345678123, "settings": {"interval_ms": 500}}
    good = config.seal(body, key.sign)
    narrowing = dict(body, version=4, consent="usage")
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
        "valid": [{"body": body, "wire": good.decode()},
                  {"body": narrowing, "wire": config.seal(narrowing, key.sign).decode()}],
        "invalid": [
            {"why": "bad signature", "wire": json.dumps(tampered, separators=(",", ":"), sort_keys=True)},
            {"why": "bad signature", "wire": forged.decode()},
            {"why": "setting interval_ms must be an int in 100..3600000", "wire": out_of_range},
            {"why": "config is not JSON", "wire": "{"},
        ],
    }


def batches(key: Ed25519PrivateKey) -> dict:
    recs = [v["wire"] for v in records()["valid"]]  # as the devices sent them
    st = states()["valid"][0]["wire"]
    first = batch.Batch("gw-1", 1, batch.GENESIS, 1732345679000, tuple(recs[:2]), (st,))
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
    # The next link, version 3: the gateway's window over the first record (bike-1, seq 1).
    rec = json.loads(recs[0])
    summary = aggregate.Aggregate(
        rec["d"], rec["i"], "bike", aggregate.window_start(rec["t"], 60), 60, 1, rec["s"],
        rec["s"], aggregate.RAW_SENT, aggregate.fold_metrics({}, rec["m"])).to_obj()
    third = batch.Batch("gw-1", 3, out[1]["digest"], 1732345740000, (), (),
                        batch.VERSION_AGGREGATES, (summary,))
    sealed = batch.seal(third, key)
    link = {"canonical": batch.canonical(third).decode(), "digest": sealed.digest,
            "signature": sealed.signature}
    return {"public_key": base64.b64encode(public_raw(key)).decode(), "chain": out,
            "aggregate_link": link}


def _flip(data: bytes, byte: int) -> bytes:
    out = bytearray(data)
    out[byte] ^= 1
    return bytes(out)


def ed25519_vectors() -> dict:
    """RFC 8032 7.1 for protocol.ed25519.verify, plus tampered copies that must fail."""
    valid, invalid = [], []
    for name, secret, public, message, signature in RFC8032:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
        if public_raw(key).hex() != public or key.sign(bytes.fromhex(message)).hex() != signature:
            raise SystemExit(f"RFC 8032 {name}: the transcription differs from cryptography's")
        valid.append({"name": name, "secret_key": secret, "public_key": public,
                      "message": message, "signature": signature})
        pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
        s = int.from_bytes(sig[32:], "little")
        cases = [
            ("message bit flipped", pub, _flip(msg, len(msg) // 2), sig) if msg else
            ("message byte added", pub, b"\x00", sig),
            ("signature R bit flipped", pub, msg, _flip(sig, 0)),
            ("signature S bit flipped", pub, msg, _flip(sig, 32)),
            ("public key bit flipped", _flip(pub, 0), msg, sig),
            ("non-canonical S (S + L)", pub, msg, sig[:32] + (s + ED25519_L).to_bytes(32, "little")),
        ]
        if name == "TEST 1":
            cases.append(("S = L", pub, msg, sig[:32] + ED25519_L.to_bytes(32, "little")))
        for why, p, m, g in cases:
            try:
                Ed25519PublicKey.from_public_bytes(p).verify(g, m)
            except (InvalidSignature, ValueError):
                pass
            else:
                raise SystemExit(f"RFC 8032 {name}, {why}: cryptography accepts it")
            invalid.append({"of": name, "why": why, "public_key": p.hex(), "message": m.hex(),
                            "signature": g.hex()})
    return {"source": "RFC 8032 section 7.1", "valid": valid, "invalid": invalid}


def sha512_vectors() -> dict:
    """FIPS 180-4 examples, the padding's edge lengths and a long multi-block message."""
    cases = list(FIPS_SHA512)
    pattern = bytes(range(256)) * 8
    # 111 bytes: padding and length just fit the block; 112: they spill into a second one.
    for n in (111, 112, 127, 128, 129, 239, 240):
        cases.append((f"{n} bytes", pattern[:n], hashlib.sha512(pattern[:n]).hexdigest()))
    cases.append(("2048 bytes (16 blocks + padding)", pattern, hashlib.sha512(pattern).hexdigest()))
    for name, message, digest in cases:
        if hashlib.sha512(message).hexdigest() != digest:
            raise SystemExit(f"SHA-512 {name}: the transcription differs from hashlib's")
    return {
        "source": "FIPS 180-4 examples (NIST CSRC); the rest computed with hashlib",
        "vectors": [{"name": n, "message": m.hex(), "digest": d} for n, m, d in cases],
    }


def frames() -> dict:
    """Frames (protocol.frame) of the records above: each case lists the frame's wire bytes and
    its records as the gateway splits them (each one then decoded on its own: `ok` says whether
    protocol.record accepts it)."""
    mac = record_mac()
    recs = [record.encode("bike-1", TEST_INCARNATION, s, 1732345678000 + s,
                          {"cadence": 80 + s, "power": 200.5}, mac) for s in range(1, 5)]
    bad = b'{"v":2,"d":"bike-1","s":1,"t":0,"m":{}}'  # no incarnation, no tag
    cases = [
        ("one record", [recs[0]]),
        ("four records", recs),
        ("a bad record between good ones", [recs[0], bad, recs[1]]),
        ("an empty record", [recs[2], b"", recs[3]]),
    ]
    valid = []
    for why, parts in cases:
        wire = b"".join(p + frame.SEP for p in parts)
        if frame.split(wire) != parts:
            raise SystemExit(f"frame vector {why!r} splits differently")
        ok = []
        for p in parts:
            try:
                record.decode(p)
                ok.append(True)
            except ValueError:
                ok.append(False)
        valid.append({"why": why, "wire": wire.decode(), "records": [p.decode() for p in parts],
                      "ok": ok})
    big = recs[0] + frame.SEP
    invalid = [
        ("a single record (no line feed at its end)", recs[0]),
        ("too many records", frame.SEP.join([recs[0]] * (MAX_FRAME_RECORDS + 1)) + frame.SEP),
        ("too large", big * (MAX_FRAME_BYTES // len(big) + 1)),
    ]
    for why, wire in invalid:  # each must really be refused, or it is no vector
        try:
            frame.split(wire)
        except ValueError:
            continue
        raise SystemExit(f"invalid frame vector {why!r} is accepted")
    return {
        "max_records": MAX_FRAME_RECORDS,
        "max_bytes": MAX_FRAME_BYTES,
        "valid": valid,
        "invalid": [{"why": w, "wire": x.decode()} for w, x in invalid],
    }


def main() -> None:
    key = test_key()
    files = {
        "records.json": records(),
        "acks.json": acks(),
        "states.json": states(),
        "hmac.json": hmac_vectors(),
        "configs.json": configs(key),
        "batches.json": batches(key),
        "ed25519.json": ed25519_vectors(),
        "sha512.json": sha512_vectors(),
        "hints.json": hints(),
        "frames.json": frames(),
    }
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
