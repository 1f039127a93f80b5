# Frames (protocol.frame): the shared vectors, and the device's frame builder (device/mqtt.py,
# in the client's send buffer) producing exactly protocol.frame's bytes on the wire.
import json

from fakes import FakeStream, check, equal, plug, raises

from device import mqtt
from protocol import bounds, frame

DATA = None


def _vectors(name):
    with open(DATA + "/" + name) as f:
        return json.load(f)


def _publish_bytes(topic, pid, payload):
    head = bytearray(8 + len(topic))
    n = mqtt.publish_header(head, topic, len(payload), 1, False, pid)
    return bytes(head[:n]) + payload


def test_frames_match_the_shared_vectors(tmp):
    v = _vectors("frames.json")
    equal(v["max_records"], bounds.MAX_FRAME_RECORDS, "max records")
    equal(v["max_bytes"], bounds.MAX_FRAME_BYTES, "max bytes")
    for case in v["valid"]:
        wire = case["wire"].encode()
        parts = [r.encode() for r in case["records"]]
        check(frame.is_frame(wire), "not a frame: " + case["why"])
        equal(frame.split(wire), parts, case["why"])
        if all(parts):
            equal(frame.encode(parts), wire, "encode " + case["why"])
    for case in v["invalid"]:
        raises(ValueError, frame.split, case["wire"].encode())


def test_the_device_copy_of_the_bound_is_protocols(tmp):
    from device import agent

    if hasattr(agent, "_MAX_FRAME"):  # CPython; MicroPython inlines the const
        equal(agent._MAX_FRAME, bounds.MAX_FRAME_RECORDS, "_MAX_FRAME")


def _build(c, topic, records):
    """Put records into a frame in the client's tx; the position after the last that fit and
    how many did."""
    pos = n = 0
    for r in records:
        at = mqtt.frame_put(c, topic, pos, r)
        if not at:
            break
        pos = at
        n += 1
    return pos, n


def test_a_frame_built_in_the_send_buffer_is_protocols_frame(tmp):
    v = _vectors("frames.json")
    recs = [r.encode() for r in v["valid"][1]["records"]]  # four records of ~110 bytes
    topic = b"fleet/bike-1/telemetry"
    c = mqtt.Client(b"bike-1")
    s = plug(c, FakeStream())
    for count in (1, 4):  # one short frame (1-byte length), one long one (2 bytes)
        pos, n = _build(c, topic, recs[:count])
        equal(n, count, "records that fit")
        pid = mqtt.frame_send(c, topic, pos)
        equal(s.take(), _publish_bytes(topic, pid, frame.encode(recs[:count])), str(count))
    pos, n = _build(c, topic, [b"{}"])  # the shortest frame: one-byte length
    equal(s.take(), b"", "nothing sent while building")
    pid = mqtt.frame_send(c, topic, pos)
    equal(s.take(), _publish_bytes(topic, pid, b"{}\n"), "shortest frame")


def test_a_full_frame_refuses_the_next_record_and_keeps_its_own(tmp):
    topic = b"fleet/engine-1/telemetry"
    c = mqtt.Client(b"engine-1")
    s = plug(c, FakeStream())
    rec = b'{"x":"' + b"a" * 200 + b'"}'
    pos, n = _build(c, topic, [rec] * 10)
    equal(n, (mqtt.TX_SIZE - 7 - len(topic)) // (len(rec) + 1), "records that fit")
    equal(mqtt.frame_put(c, topic, pos, rec), 0, "the next one does not")
    equal(mqtt.frame_put(c, topic, 0, b"{}" * 400), 0, "a record larger than tx never fits")
    pid = mqtt.frame_send(c, topic, pos)
    equal(s.take(), _publish_bytes(topic, pid, frame.encode([rec] * n)), "the frame sent")
