# device.codec must produce exactly protocol's bytes: checked against protocol itself and the
# shared vectors in tests/vectors (copied into DATA by the pytest side).
import json

from fakes import equal, raises

from device import codec
from device.profiles import load
from protocol import ack, record, state, topics

DATA = None


def _vectors(name):
    with open(DATA + "/" + name) as f:
        return json.load(f)


def test_records_match_the_shared_vectors(tmp):
    for case in _vectors("records.json")["valid"]:
        got = codec.encode_record(codec.record_prefix(case["device"]), case["seq"], case["t"],
                                  case["metrics"])
        equal(got.decode(), case["wire"], "vector")


def test_records_match_protocol_for_every_profile(tmp):
    for name in ("bike", "mirror", "engine"):
        p = load(name, "dev-" + name)
        prefix = codec.record_prefix("dev-" + name)
        for seq in range(1, 40):
            m = p.sample()
            want = record.encode("dev-" + name, seq, 1732345678123 + seq, m)
            equal(codec.encode_record(prefix, seq, 1732345678123 + seq, m), want, name)
            record.decode(want)


def test_records_refused_like_protocol(tmp):
    prefix = codec.record_prefix("bike-1")
    bad_metrics = [
        {"Upper": 1}, {"": 1}, {"a" * 33: 1}, {"x": "1"}, {"x": None}, {"x": [1]},
        {"x": float("inf")}, {"x": float("nan")}, {"x-y": 1},
        {"x": 2 ** 53}, {"x": -(2 ** 53)}, {"x": 2 ** 63},
        dict(("m" + str(i), i) for i in range(33)),
    ]
    for m in bad_metrics:
        raises(ValueError, codec.encode_record, prefix, 1, 0, m)
        raises(ValueError, record.encode, "bike-1", 1, 0, m)
    for seq, t in ((0, 0), (True, 0), (1, -1), (1, 1.5), (2 ** 53, 0), (1, 2 ** 53),
                   (2 ** 63, 1), (1, 2 ** 64)):
        raises(ValueError, codec.encode_record, prefix, seq, t, {})
        raises(ValueError, record.encode, "bike-1", seq, t, {})
    # the largest values every hop holds are accepted by both, byte for byte
    top = 2 ** 53 - 1
    equal(codec.encode_record(prefix, top, top, {"x": top, "y": -top}),
          record.encode("bike-1", top, top, {"x": top, "y": -top}), "bounds")
    # names and values at their longest, plus huge seq and t: just over 2048 bytes
    too_big = dict((f"m{i:02d}_" + "a" * 28, -1.2345678901234567e-300) for i in range(32))
    long_id = "x" * 64
    raises(ValueError, codec.encode_record, codec.record_prefix(long_id), 10 ** 25, 10 ** 25,
           too_big)
    raises(ValueError, record.encode, long_id, 10 ** 25, 10 ** 25, too_big)

def test_device_ids_checked_like_protocol(tmp):
    for text in ("bike-1", "A_9", "x" * 64, "", "-x", "_x", "a/b", "a+b", "a#", "x" * 65, "é"):
        equal(codec.valid_id(text), topics.valid_device_id(text), text)
    raises(ValueError, codec.record_prefix, "a/b")


def test_acks_match_the_shared_vectors_and_protocol(tmp):
    v = _vectors("acks.json")
    for case in v["valid"]:
        equal(codec.decode_ack(case["wire"].encode()), case["seq"], "valid ack")
    for case in v["invalid"]:
        raises(ValueError, codec.decode_ack, case["wire"].encode())
    for n in (0, 1, 7, 123456789):
        equal(codec.decode_ack(ack.encode(n)), n, "round trip")
    for bad in (b'{"v":1,"seq":true}', b'{"v":1,"seq":1.0}', b"[]", b"x" * 200, b""):
        raises(ValueError, codec.decode_ack, bad)


def test_state_fields_pass_protocol_state(tmp):
    fields = {"v": 1, "d": "bike-1", "t": 1, "impl": "micropython", "fw": "0.1.0",
              "profile": "bike", "config_version": 0, "config_status": "none", "reason": "",
              "heap_free": 1, "buffered": 0, "dropped": 0, "seq": 0}
    wire = json.dumps(fields, separators=(",", ":")).encode()
    equal(state.decode(wire)["d"], "bike-1", "state accepted")
