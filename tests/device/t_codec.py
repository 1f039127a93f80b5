# device.codec must produce exactly protocol's bytes: checked against protocol itself and the
# shared vectors in tests/vectors (copied into DATA by the pytest side).
import binascii
import json

from fakes import check, equal, raises

from device import codec
from device import consent as dconsent
from device import hint as dhint
from device.profiles import load
from protocol import ack, record, state, tag, topics

DATA = None
INC = 7654321
MAC = tag.Hmac(b"\x42" * 32)


class _Mac:
    """codec's tag with protocol.tag.Hmac's interface."""

    def __init__(self, key):
        self.pads = codec.mac_key(key)

    def tag(self, message):
        return codec.mac_tag(self.pads, message)


def _encode(prefix, seq, t, metrics, mac):
    """The wire record as buffer.put writes it: codec's signed bytes, tag, HEAD and TAIL."""
    signed = codec.signed_record(prefix, seq, t, metrics)
    return signed[:-1] + codec.HEAD + mac.tag(signed) + codec.TAIL


def _vectors(name):
    with open(DATA + "/" + name) as f:
        return json.load(f)


def test_records_match_the_shared_vectors(tmp):
    v = _vectors("records.json")
    mac = tag.Hmac(binascii.a2b_base64(v["record_key"]))
    for case in v["valid"]:
        got = _encode(codec.record_prefix(case["device"], case["incarnation"]),
                                  case["seq"], case["t"], case["metrics"], mac)
        equal(got.decode(), case["wire"], "vector")
        check(tag.verify(mac, got), "the tag verifies under the vectors' key")
        check(not tag.verify(MAC, got), "and under no other key")


def test_records_match_protocol_for_every_profile(tmp):
    for name in ("bike", "mirror", "engine"):
        p = load(name, "dev-" + name)
        prefix = codec.record_prefix("dev-" + name, INC)
        for seq in range(1, 40):
            m = p.sample()
            want = record.encode("dev-" + name, INC, seq, 1732345678123 + seq, m, MAC)
            equal(_encode(prefix, seq, 1732345678123 + seq, m, MAC), want, name)
            equal(record.decode(want)["i"], INC, "incarnation")


def test_incarnations_checked_like_protocol(tmp):
    for inc in (0, -1, 2 ** 31, True, "1", 1.0):
        raises(ValueError, codec.record_prefix, "bike-1", inc)
        raises(ValueError, record.encode, "bike-1", inc, 1, 0, {}, MAC)
    for inc in (1, 2 ** 31 - 1):
        equal(_encode(codec.record_prefix("bike-1", inc), 1, 0, {}, MAC),
              record.encode("bike-1", inc, 1, 0, {}, MAC), "incarnation " + str(inc))


def test_mac_is_protocol_tag_hmac_and_rfc_4231(tmp):
    for case in _vectors("hmac.json")["rfc4231"]:
        key = binascii.unhexlify(case["key"])
        if len(key) > 64:
            continue  # record keys are 32 bytes: mac_key does not hash long keys
        data = binascii.unhexlify(case["data"])
        equal(codec.mac_tag(codec.mac_key(key), data).decode(), case["hmac"][:32], case["name"])
        equal(codec.mac_tag(codec.mac_key(key), data), tag.Hmac(key).tag(data), case["name"])
    v = _vectors("records.json")
    ours = _Mac(binascii.a2b_base64(v["record_key"]))
    for case in v["valid"]:
        got = _encode(codec.record_prefix(case["device"], case["incarnation"]),
                                  case["seq"], case["t"], case["metrics"], ours)
        equal(got.decode(), case["wire"], "vector with codec.Mac")


def test_head_and_tail_are_protocol_tags(tmp):
    for signed in (b'{"v":2}', b'{"a":{"b":1}}'):
        wire = signed[:-1] + codec.HEAD + _Mac(b"\x42" * 32).tag(signed) + codec.TAIL
        equal(wire, tag.append(MAC, signed), "append")
        equal(tag.split(wire)[0], signed, "split")


def test_records_refused_like_protocol(tmp):
    prefix = codec.record_prefix("bike-1", INC)
    bad_metrics = [
        {"Upper": 1}, {"": 1}, {"a" * 33: 1}, {"x": "1"}, {"x": None}, {"x": [1]},
        {"x": float("inf")}, {"x": float("nan")}, {"x-y": 1},
        {"x": 2 ** 53}, {"x": -(2 ** 53)}, {"x": 2 ** 63},
        dict(("m" + str(i), i) for i in range(33)),
    ]
    for m in bad_metrics:
        raises(ValueError, _encode, prefix, 1, 0, m, MAC)
        raises(ValueError, record.encode, "bike-1", INC, 1, 0, m, MAC)
    for seq, t in ((0, 0), (True, 0), (1, -1), (1, 1.5), (2 ** 53, 0), (1, 2 ** 53),
                   (2 ** 63, 1), (1, 2 ** 64)):
        raises(ValueError, _encode, prefix, seq, t, {}, MAC)
        raises(ValueError, record.encode, "bike-1", INC, seq, t, {}, MAC)
    # the largest values every hop holds are accepted by both, byte for byte
    top = 2 ** 53 - 1
    equal(_encode(prefix, top, top, {"x": top, "y": -top}, MAC),
          record.encode("bike-1", INC, top, top, {"x": top, "y": -top}, MAC), "bounds")
    # names and values at their longest: over 2048 bytes with the tag
    too_big = dict((f"m{i:02d}_" + "a" * 28, -1.2345678901234567e-300) for i in range(32))
    long_id = "x" * 64
    raises(ValueError, _encode, codec.record_prefix(long_id, INC), 10 ** 15,
           10 ** 15, too_big, MAC)
    raises(ValueError, record.encode, long_id, INC, 10 ** 15, 10 ** 15, too_big, MAC)

def test_device_ids_checked_like_protocol(tmp):
    for text in ("bike-1", "A_9", "x" * 64, "", "-x", "_x", "a/b", "a+b", "a#", "x" * 65, "é"):
        equal(codec.valid_id(text), topics.valid_device_id(text), text)
    raises(ValueError, codec.record_prefix, "a/b", INC)


def test_acks_match_the_shared_vectors_and_protocol(tmp):
    v = _vectors("acks.json")
    for case in v["valid"]:
        equal(codec.decode_ack(case["wire"].encode()), (case["incarnation"], case["seq"]),
              "valid ack")
    for case in v["invalid"]:
        raises(ValueError, codec.decode_ack, case["wire"].encode())
    for n in (0, 1, 7, 123456789, 2 ** 53 - 1):
        for inc in (0, 1, INC, 2 ** 31 - 1):
            equal(codec.decode_ack(ack.encode(n, inc)), (inc, n), "round trip")
    for bad in (b'{"v":1,"seq":true}', b'{"v":1,"seq":1.0}', b"[]", b"x" * 200, b"",
                b'{"v":2,"i":true,"seq":1}', b'{"v":2,"i":2147483648,"seq":1}',
                b'{"v":2,"i":"1","seq":1}', b'{"v":true,"seq":1}', b'{"v":3,"i":1,"seq":1}'):
        raises(ValueError, codec.decode_ack, bad)
        raises(ValueError, ack.decode, bad)


def test_state_fields_pass_protocol_state(tmp):
    v = _vectors("states.json")
    mac = tag.Hmac(binascii.a2b_base64(v["record_key"]))
    for case in v["valid"]:
        # the device's way (dumps + tag) gives a state protocol accepts and whose tag verifies
        signed = json.dumps(case["fields"], separators=(",", ":")).encode()
        wire = signed[:-1] + codec.HEAD + mac.tag(signed) + codec.TAIL
        equal(state.decode(wire)["i"], case["fields"]["i"], "state accepted")
        check(tag.verify(mac, wire), "state tag verifies")
        check(tag.verify(mac, case["wire"].encode()), "vector verifies")
    fields = {"v": 2, "d": "bike-1", "i": INC, "t": 1, "impl": "micropython", "fw": "0.1.0",
              "profile": "bike", "config_version": 0, "config_status": "none", "reason": "",
              "heap_free": 1, "buffered": 0, "dropped": 0, "seq": 0, "floor": 1,
              "reset_cause": "none", "resets": 0, "link_error": "", "link_failures": 0}
    signed = json.dumps(fields, separators=(",", ":")).encode()
    wire = signed[:-1] + codec.HEAD + MAC.tag(signed) + codec.TAIL
    equal(state.decode(wire)["d"], "bike-1", "state accepted")
    # protocol.state.encode makes the same object (key order is the interpreter's dict's)
    ours = state.encode(fields, MAC)
    check(tag.verify(MAC, ours), "protocol's state tag verifies")
    a, b = json.loads(ours), json.loads(wire)
    a.pop("h")
    b.pop("h")
    equal(a, b, "the same state")


def test_consent_records_match_the_shared_vectors_and_protocol(tmp):
    v = _vectors("records.json")
    key = binascii.a2b_base64(v["record_key"])
    mac = _Mac(key)
    check(len(v["consent"]) >= 3, "consent vectors")
    for case in v["consent"]:
        prefix = codec.record_prefix(case["device"], case["incarnation"])
        signed = dconsent.signed_consent(prefix, case["seq"], case["t"], case["tier"],
                                      case["origin"], case["cfg"])
        equal(signed.decode(), case["signed"], "signed bytes")
        wire = signed[:-1] + codec.HEAD + mac.tag(signed) + codec.TAIL
        equal(wire.decode(), case["wire"], "consent vector")
        equal(wire, record.encode_consent(case["device"], case["incarnation"], case["seq"],
                                          case["t"], case["tier"], case["origin"], case["cfg"],
                                          tag.Hmac(key)), "protocol's bytes")
        check(record.is_consent(record.decode(wire)), "a consent record")
        check(tag.verify(tag.Hmac(key), wire), "tagged")
    prefix = codec.record_prefix("bike-1", INC)
    for seq, t, tier, origin, cfg in ((0, 1, "usage", "device", 0), (1, -1, "usage", "device", 0),
                                      (1, 1, "all", "device", 0), (1, 1, "usage", "user", 0),
                                      (1, 1, "usage", "cloud", -1), (1, 1, "usage", "cloud", 2 ** 31),
                                      (1, 1, "usage", "cloud", True), (1, 1, None, "cloud", 1)):
        raises(ValueError, dconsent.signed_consent, prefix, seq, t, tier, origin, cfg)
        raises(ValueError, record.consent_signed_bytes, "bike-1", INC, seq, t, tier, origin, cfg)


def test_hints_match_the_shared_vectors_and_protocol(tmp):
    from protocol import hint

    v = _vectors("hints.json")
    equal(v["topic"], hint.TOPIC, "topic")
    for case in v["valid"]:
        equal(dhint.decode(case["wire"].encode()), case["min_reconnect_ms"], "valid hint")
        equal(hint.decode(case["wire"].encode()), case["min_reconnect_ms"], "protocol agrees")
    for case in v["invalid"]:
        raises(ValueError, dhint.decode, case["wire"].encode())
        raises(ValueError, hint.decode, case["wire"].encode())
    for bad in (b"[]", b"{}", b'{"v":1}', b'{"v":true,"min_reconnect_ms":1}',
                b'{"v":1,"min_reconnect_ms":false}', b"x" * 100, b"",
                b'{"v":1,"min_reconnect_ms":"5"}', b"null"):
        raises(ValueError, dhint.decode, bad)
        raises(ValueError, hint.decode, bad)
    for ms in (0, 1, 12000, 600000):
        equal(dhint.decode(hint.encode(ms)), ms, "round trip")


class _Stub:
    def __init__(self, **kw):
        for k in kw:
            setattr(self, k, kw[k])


def _agent_state(reason, error, big):
    from device import agent

    sent = []
    client = _Stub(publish=lambda topic, parts, qos: sent.append(b"".join(bytes(p) for p in parts)))
    link = _Stub(connects=big, failures=big, last_error=error, hint_ms=600000)
    buf = _Stub(incarnation=2 ** 31 - 1, buffered=big, dropped=big, last=big, floor=big,
                bytes=big, mac=codec.mac_key(b"\x42" * 32))
    conf = _Stub(version=2 ** 31 - 1, status="rejected", reason=reason)
    a = agent.Agent("x" * 64, _Stub(name="engine"), buf, conf, client, link, lambda e: None)
    a.boot, a.heap_min, a.uptime_s, a.rank = ("requested", big, None, None, ""), 4096, 315000000, 1
    a.publish_state("heartbeat")
    return sent[0]


def test_the_agents_state_at_its_longest_passes_protocol_state(tmp):
    big = 2 ** 53 - 1
    for reason, error in (("r" * 300, "e" * 300), ('"\\\x01' * 100, "\u00e9\u4e2d" * 150),
                          ("", "")):
        wire = _agent_state(reason, error, big)
        check(len(wire) <= state.MAX_STATE_BYTES, "state of " + str(len(wire)) + " bytes")
        got = state.decode(wire)
        check(tag.verify(MAC, wire), "tagged")
        equal((got["why"], got["consent"], got["hint_ms"], got["buffer_bytes"], got["reconnects"],
               got["heap_low"], got["seq"]), ("heartbeat", "usage", 600000, big, big - 1, 4096, big),
              "vitals")
        check(got["reason"] == reason[:160] or got["reason"] == reason[:32], "reason cut")
        check("rssi" not in got, "no rssi on this port")
