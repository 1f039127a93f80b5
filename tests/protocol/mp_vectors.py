# Checks the shared wire vectors with the device-side codecs. Runs under MicroPython and
# CPython alike (no pytest there): `micropython tests/protocol/mp_vectors.py VECTORS_DIR`.
import binascii
import json
import sys

from protocol import ack, config, record


def load(directory, name):
    with open(directory + "/" + name) as f:
        return json.load(f)


def check_records(v):
    for case in v["valid"]:
        wire = record.encode(case["device"], case["seq"], case["t"], case["metrics"])
        if wire.decode() != case["wire"]:
            raise AssertionError("record bytes differ: " + wire.decode())
        got = record.decode(case["wire"].encode())
        if got["s"] != case["seq"] or got["d"] != case["device"]:
            raise AssertionError("record decode differs")
    for case in v["invalid"]:
        try:
            record.decode(case["wire"].encode())
        except ValueError:
            continue
        raise AssertionError("record accepted: " + case["why"])


def check_acks(v):
    for case in v["valid"]:
        if ack.encode(case["seq"]).decode() != case["wire"]:
            raise AssertionError("ack bytes differ")
        if ack.decode(case["wire"].encode()) != case["seq"]:
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
    check_records(load(directory, "records.json"))
    check_acks(load(directory, "acks.json"))
    check_configs(load(directory, "configs.json"))
    print("vectors ok on " + sys.implementation.name)


main(sys.argv[1])
