# Checks the shared wire vectors with the device-side codecs. Runs under MicroPython and
# CPython alike (no pytest there): `micropython tests/protocol/mp_vectors.py VECTORS_DIR`.
import binascii
import json
import sys

from protocol import ack, config, hint, record, state, tag


def load(directory, name):
    with open(directory + "/" + name) as f:
        return json.load(f)


def check_hmac(v):
    for case in v["rfc4231"]:
        mac = tag.Hmac(binascii.unhexlify(case["key"]))
        got = binascii.hexlify(mac.digest(binascii.unhexlify(case["data"]))).decode()
        if got[:len(case["hmac"])] != case["hmac"]:
            raise AssertionError("HMAC-SHA256 differs: " + case["name"])


def check_records(v):
    mac = tag.Hmac(binascii.a2b_base64(v["record_key"]))
    other = tag.Hmac(b"\x01" * 32)
    for case in v["valid"]:
        wire = record.encode(case["device"], case["incarnation"], case["seq"], case["t"],
                             case["metrics"], mac)
        if wire.decode() != case["wire"]:
            raise AssertionError("record bytes differ: " + wire.decode())
        got = record.decode(case["wire"].encode())
        if got["s"] != case["seq"] or got["d"] != case["device"] or got["i"] != case["incarnation"]:
            raise AssertionError("record decode differs")
        signed, _ = tag.split(wire)
        if signed.decode() != case["signed"]:
            raise AssertionError("signed bytes differ")
        if not tag.verify(mac, wire) or tag.verify(other, wire):
            raise AssertionError("tag verification is wrong")
        altered = wire.replace(b'"s":', b'"s":1')  # another seq, the same tag
        if tag.verify(mac, altered):
            raise AssertionError("an altered record verifies")
    for case in v["consent"]:
        wire = record.encode_consent(case["device"], case["incarnation"], case["seq"], case["t"],
                                     case["tier"], case["origin"], case["cfg"], mac)
        if wire.decode() != case["wire"]:
            raise AssertionError("consent record bytes differ: " + wire.decode())
        got = record.decode(wire)
        if not record.is_consent(got) or got["c"]["tier"] != case["tier"] or \
                not tag.verify(mac, wire):
            raise AssertionError("consent record decode differs")
    for case in v["valid_v1"]:
        got = record.decode(case["wire"].encode())
        if got["s"] != case["seq"] or record.incarnation(got) != 0:
            raise AssertionError("v1 record decode differs")
    for case in v["invalid"]:
        try:
            record.decode(case["wire"].encode())
        except ValueError:
            continue
        raise AssertionError("record accepted: " + case["why"])


def check_states(v):
    mac = tag.Hmac(binascii.a2b_base64(v["record_key"]))
    for case in v["valid"]:
        got = state.decode(case["wire"].encode())
        if got["i"] != case["fields"]["i"] or not tag.verify(mac, case["wire"].encode()):
            raise AssertionError("state differs or its tag does not verify")
    for case in v["invalid"]:
        try:
            state.decode(case["wire"].encode())
        except ValueError:
            continue
        raise AssertionError("state accepted: " + case["why"])


def check_hints(v):
    for case in v["valid"]:
        if hint.encode(case["min_reconnect_ms"]).decode() != case["wire"] or \
                hint.decode(case["wire"].encode()) != case["min_reconnect_ms"]:
            raise AssertionError("hint differs")
    for case in v["invalid"]:
        try:
            hint.decode(case["wire"].encode())
        except ValueError:
            continue
        raise AssertionError("hint accepted: " + case["why"])


def check_acks(v):
    for case in v["valid"]:
        if ack.encode(case["seq"], case["incarnation"]).decode() != case["wire"]:
            raise AssertionError("ack bytes differ")
        if ack.decode(case["wire"].encode()) != (case["incarnation"], case["seq"]):
            raise AssertionError("ack decode differs")
    for case in v["invalid"]:
        try:
            ack.decode(case["wire"].encode())
        except ValueError:
            continue
        raise AssertionError("ack accepted: " + case["why"])


def check_configs(v):
    pub = binascii.a2b_base64(v["public_key"])
    for case in v["valid"]:
        body = config.open_envelope(case["wire"].encode(), pub)
        if body["version"] != case["body"]["version"] or body["settings"] != case["body"]["settings"]:
            raise AssertionError("config body differs")
    for case in v["invalid"]:
        try:
            config.open_envelope(case["wire"].encode(), pub)
        except ValueError as exc:
            if str(exc) != case["why"]:
                raise AssertionError("config refused for another reason: " + str(exc))
            continue
        raise AssertionError("config accepted: " + case["why"])


def main(directory):
    check_hmac(load(directory, "hmac.json"))
    check_records(load(directory, "records.json"))
    check_states(load(directory, "states.json"))
    check_acks(load(directory, "acks.json"))
    check_configs(load(directory, "configs.json"))
    check_hints(load(directory, "hints.json"))
    print("vectors ok on " + sys.implementation.name)


main(sys.argv[1])
