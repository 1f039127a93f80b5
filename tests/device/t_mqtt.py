# MQTT codec and client: exact bytes, partial I/O, and malformed frames.
from fakes import FakeStream, equal, plug, raises

from device import mqtt


def _len_bytes(n):
    buf = bytearray(5)
    end = mqtt.encode_len(buf, 0, n)
    return bytes(buf[:end])


def test_remaining_length_edges(tmp):
    cases = [
        (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    ]
    for n, want in cases:
        equal(_len_bytes(n), want, "encode " + str(n))
        equal(mqtt.decode_len(want, 0, len(want)), (n, len(want)), "decode " + str(n))
    raises(ValueError, _len_bytes, 268435456)
    raises(ValueError, _len_bytes, -1)
    # incomplete: more bytes needed, not an error
    equal(mqtt.decode_len(b"\x80\x80", 0, 2), (-1, 0), "incomplete")
    # a fifth continuation byte is malformed
    raises(mqtt.MQTTError, mqtt.decode_len, b"\xff\xff\xff\xff\x01", 0, 5)


def test_connect_bytes(tmp):
    got = mqtt.connect_packet(b"bike-1", 30)
    equal(got, b"\x10\x12\x00\x04MQTT\x04\x02\x00\x1e\x00\x06bike-1", "plain connect")
    got = mqtt.connect_packet(b"bike-1", 60, b"fleet/bike-1/status", b"offline")
    want = (b"\x10\x30\x00\x04MQTT\x04\x2e\x00\x3c\x00\x06bike-1"
            b"\x00\x13fleet/bike-1/status\x00\x07offline")
    equal(got, want, "connect with will")
    raises(ValueError, mqtt.connect_packet, b"x", 70000)


def test_publish_puback_subscribe_bytes(tmp):
    buf = bytearray(64)
    n = mqtt.publish_header(buf, b"a/b", 2, 1, False, 10)
    equal(bytes(buf[:n]), b"\x32\x09\x00\x03a/b\x00\x0a", "qos1 header")
    n = mqtt.publish_header(buf, b"a/b", 7, 1, True, 1)
    equal(bytes(buf[:n]), b"\x33\x0e\x00\x03a/b\x00\x01", "retained")
    n = mqtt.publish_header(buf, b"t", 0, 0)
    equal(bytes(buf[:n]), b"\x30\x03\x00\x01t", "qos0")
    raises(ValueError, mqtt.publish_header, buf, b"t", 0, 1, False, 0)
    raises(ValueError, mqtt.publish_header, buf, b"t", 0, 2, False, 1)
    equal(mqtt.puback_packet(0x1234), b"\x40\x02\x12\x34", "puback")
    got = mqtt.subscribe_packet(7, [(b"a", 1), (b"bc", 0)])
    equal(got, b"\x82\x0b\x00\x07\x00\x01a\x01\x00\x02bc\x00", "subscribe")


def test_client_publish_is_one_write_with_big_length(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    payload = b"x" * 200  # remaining length 2 + 5 + 2 + 200 = 209 -> two length bytes
    pid = c.publish(b"t/x/y", payload, 1)
    equal(pid, 1, "first packet id")
    equal(s.take(), b"\x32\xd1\x01\x00\x05t/x/y\x00\x01" + payload, "publish bytes")
    big = b"y" * (mqtt.TX_SIZE + 10)  # larger than tx: header then payload
    c.publish(b"t", big, 0)
    equal(s.take(), b"\x30" + _len_bytes(3 + len(big)) + b"\x00\x01t" + big, "big publish")


def test_client_publish_of_parts_sends_their_concatenation(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    data = b'{"v":2,"x":1}'
    parts = (memoryview(data)[:-1], b',"h":"', b"0" * 32, b'"}')
    whole = b"".join(bytes(p) for p in parts)
    c.publish(b"t/x/y", parts, 1)
    equal(s.take(), b"\x32" + _len_bytes(2 + 5 + 2 + len(whole)) + b"\x00\x05t/x/y\x00\x01" + whole,
          "parts in the tx buffer")
    big = (b"y" * mqtt.TX_SIZE, b"z" * 10)  # larger than tx: header then each part
    c.publish(b"t", big, 0)
    equal(s.take(), b"\x30" + _len_bytes(3 + mqtt.TX_SIZE + 10) + b"\x00\x01t" + big[0] + big[1],
          "big publish of parts")


def test_packet_ids_wrap_and_skip_zero(tmp):
    c = mqtt.Client(b"dev")
    plug(c, FakeStream())
    c.pid = 0xFFFE
    equal(c.publish(b"t", b"", 1), 0xFFFF, "last id")
    equal(c.publish(b"t", b"", 1), 1, "wrapped past 0")


def test_partial_writes_and_would_block(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream(chunk=3))
    s.stall = 2
    c.publish(b"topic", b"0123456789", 1)
    equal(s.take(), b"\x32\x13\x00\x05topic\x00\x010123456789", "reassembled")
    equal(s.waits, 2, "waited for writability twice")


def test_any_packet_any_time_byte_by_byte(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream(chunk=1))
    seen = []
    c.on_connack = lambda code, sp: seen.append(("connack", code, sp))
    c.on_publish = lambda t, p, q, r: seen.append((bytes(t), bytes(p), q, r))
    s.feed(b"\x20\x02\x01\x00")  # CONNACK, session present
    s.feed(b"\x40\x02\x00\x05")  # PUBACK
    s.feed(b"\x90\x03\x00\x01\x01")  # SUBACK
    s.feed(b"\x33\x0a\x00\x03a/b\x00\x09hi!")  # retained QoS 1 publish, pid 9
    s.feed(b"\xd0\x00")  # PINGRESP
    s.feed(b"\x30\x05\x00\x01cxy")  # QoS 0 publish
    c.poll(0)
    equal(seen, [("connack", 0, 1), (b"a/b", b"hi!", 1, 1), (b"c", b"xy", 0, 0)], "events")
    equal(s.take(), b"\x40\x02\x00\x09", "PUBACK for the QoS 1 publish only")
    equal(c.rx_len, 0, "nothing left over")


def test_incomplete_packet_waits_for_more(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    got = []
    c.on_publish = lambda t, p, q, r: got.append(bytes(p))
    s.feed(b"\x30\x06\x00\x01t")
    c.poll(0)
    equal(got, [], "not yet")
    s.feed(b"abc")
    c.poll(0)
    equal(got, [b"abc"], "completed")


def _bad(frame):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    s.feed(frame)
    raises(mqtt.MQTTError, c.poll, 0)


def test_malformed_frames_raise_handled_error(tmp):
    _bad(b"\x30\xff\xff\xff\xff\x01")  # 5-byte remaining length
    _bad(b"\x40\x03\x00\x01\x00")  # PUBACK of length 3
    _bad(b"\x34\x05\x00\x01t\x00\x01")  # QoS 2 publish
    _bad(b"\x32\x05\x00\x01t\x00\x00")  # QoS 1 with packet id 0
    _bad(b"\x30\x02\x00\x05")  # topic longer than the packet
    _bad(b"\x21\x02\x00\x00")  # CONNACK with flags
    _bad(b"\x10\x00")  # CONNECT from the server
    _bad(b"\xf0\x00")  # reserved type
    _bad(b"\x90\x02\x00\x01")  # SUBACK without return codes


def test_oversized_publish_is_skipped_and_acked(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream(chunk=300))
    got = []
    c.on_publish = lambda t, p, q, r: got.append(bytes(p))
    body = b"\x00\x01t\x00\x2a" + b"z" * 3000
    s.feed(b"\x32" + _len_bytes(len(body)) + body)
    s.feed(b"\x30\x04\x00\x01tk")  # a normal packet right behind it
    for _ in range(20):
        c.poll(0)
    equal(got, [b"k"], "only the small publish delivered")
    equal(c.skipped, 1, "skipped count")
    equal(s.take(), b"\x40\x02\x00\x2a", "oversized QoS 1 publish still PUBACKed")


def test_eof_and_not_connected_raise_oserror(tmp):
    c = mqtt.Client(b"dev")
    raises(OSError, c.poll, 0)
    raises(OSError, c.send, b"x")
    s = plug(c, FakeStream())
    s.eof = True
    raises(OSError, c.poll, 0)
    c.detach()
    equal(s.closed, True, "stream closed on detach")


def test_oversized_qos1_is_acked_when_its_id_comes_in_a_later_read(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    got = []
    big = []
    c.on_publish = lambda t, p, q, r: got.append(bytes(p))
    c.on_oversize = lambda t, n: big.append((bytes(t), n))
    body = b"\x00\x0cfleet/d/conf\x01\x2c" + b"z" * 2000
    frame = b"\x32" + _len_bytes(len(body)) + body
    s.feed(frame[:3])  # the fixed header alone: topic and packet id come in later reads
    c.poll(0)
    s.feed(frame[3:10])
    c.poll(0)
    for i in range(10, len(frame), 500):
        s.feed(frame[i:i + 500])
        c.poll(0)
    s.feed(b"\x30\x04\x00\x01tk")
    c.poll(0)
    equal(s.take(), b"\x40\x02\x01\x2c", "PUBACKed although its id came after the header")
    equal(got, [b"k"], "only the small publish delivered")
    equal(big, [(b"fleet/d/conf", 2000)], "reported with its topic and payload size")


def test_payload_over_the_downlink_limit_is_reported_not_delivered(tmp):
    from protocol import bounds

    equal(mqtt.MAX_DOWNLINK_BYTES, bounds.MAX_DOWNLINK_BYTES, "the device's copy of the limit")
    equal(mqtt.RX_SIZE, bounds.MAX_DOWNLINK_BYTES + bounds.DOWNLINK_OVERHEAD_BYTES, "rx size")
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    got = []
    big = []
    c.on_publish = lambda t, p, q, r: got.append(len(p))
    c.on_oversize = lambda t, n: big.append((bytes(t), n))
    limit = mqtt.MAX_DOWNLINK_BYTES
    for size, pid in ((limit, 1), (limit + 1, 2)):
        body = b"\x00\x01c" + bytes((0, pid)) + b"x" * size
        s.feed(b"\x32" + _len_bytes(len(body)) + body)
    c.poll(0)
    equal(got, [limit], "a payload of exactly the limit is delivered")
    equal(big, [(b"c", limit + 1)], "one byte more is reported")
    equal(s.take(), b"\x40\x02\x00\x01\x40\x02\x00\x02", "both PUBACKed")


def test_a_refused_subscription_is_an_error(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    s.feed(b"\x90\x04\x00\x01\x01\x01")  # both granted
    c.poll(0)
    c.subscribed = [(b"fleet/d/ack", 1), (b"fleet/d/config", 1)]
    s.feed(b"\x90\x04\x00\x02\x01\x80")  # the second refused
    try:
        c.poll(0)
    except mqtt.MQTTError as e:
        equal(str(e), "subscription 2 (fleet/d/config) refused", "reason")
    else:
        raise AssertionError("a refused subscription went unnoticed")


def test_a_packet_too_big_for_rx_is_never_delivered_truncated(tmp):
    c = mqtt.Client(b"dev")
    s = plug(c, FakeStream())
    got = []
    big = []
    c.on_publish = lambda t, p, q, r: got.append(bytes(p))
    c.on_oversize = lambda t, n: big.append(n)
    topic = b"t" * 300  # a payload within the limit, but the packet exceeds rx
    body = b"\x01\x2c" + topic + b"\x00\x07" + b"p" * 500
    s.feed(b"\x32" + _len_bytes(len(body)) + body)
    for _ in range(3):
        c.poll(0)
    equal((got, big), ([], [500]), "reported, not delivered")
    equal(s.take(), b"\x40\x02\x00\x07", "PUBACKed")
