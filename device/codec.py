"""The device's own codecs for the messages on its hot path: the tagged v2 record and state,
and the v2 ack. (The rare ones live where they are used and are unloaded with it: the consent
record in consent.py, the back-pressure hint in hint.py.)

protocol.record / protocol.ack / protocol.state define these formats; this module produces
byte-identical output (tests/device checks it against protocol and tests/vectors on both
interpreters) in a fraction of the heap: importing protocol.record + topics + ack costs ~6 KB
of the 64 KB a small device has. Validation matches protocol.record.encode: a record the
gateway would refuse is never buffered, because an unacceptable record would block the ack
stream behind it forever.

The tag (protocol.tag) is computed by mac_key/mac_tag, a minimal copy of protocol.tag.Hmac:
importing protocol.tag from .mpy took 2.8 KB of heap (plus 0.4 KB for the protocol package),
a class here 0.9 KB, these two functions 0.7 KB; tests/device checks them against protocol.tag
and RFC 4231.
"""

import binascii
import hashlib
import json

from device.port import const

_MAX_RECORD_BYTES = const(2048)
_MAX_METRICS = const(32)
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_INF = float("inf")
_MAX_INT = 9007199254740991  # protocol.bounds: seq, t and int metrics (a plain int: not a const)


def valid_id(text):
    """protocol.topics.valid_device_id: 1-64 of [A-Za-z0-9_-], not starting with - or _."""
    if type(text) is not str or not 0 < len(text) <= 64 or text[0] in "-_":
        return False
    for ch in text:
        if ch not in _ID_CHARS:
            return False
    return True


def _value(v):
    t = type(v)
    if t is bool or (t is int and -_MAX_INT <= v <= _MAX_INT) or (
            t is float and v == v and -_INF < v < _INF):
        return json.dumps(v)
    raise ValueError("metric values must be numbers (ints within 2**53) or booleans")


def record_prefix(device_id, incarnation):
    """The constant head of every record of this device in this incarnation, computed once."""
    if not valid_id(device_id):
        raise ValueError("invalid device id")
    if type(incarnation) is not int or not 0 < incarnation <= 2147483647:
        raise ValueError("incarnation must be an int in 1..2**31-1")
    return '{"v":2,"d":"' + device_id + '","i":' + str(incarnation) + ',"s":'


def mac_key(key):
    """protocol.tag.Hmac(key) for mac_tag: the padded inner and outer keys of HMAC-SHA256,
    computed once per start from the image's keys/record.key (app.py). A record key has 32
    bytes (at most 64: long keys are not hashed here)."""
    inner = bytearray(b"\x36" * 64)
    outer = bytearray(b"\x5c" * 64)
    for n in range(len(key)):  # a loop, not a generator: no extra code object on the heap
        inner[n] ^= key[n]
        outer[n] ^= key[n]
    return inner, outer


def mac_tag(mac, message):
    """protocol.tag.Hmac.tag: 32 lowercase hex bytes, the first 16 bytes of the HMAC."""
    h = hashlib.sha256(mac[0])
    h.update(message)
    o = hashlib.sha256(mac[1])
    o.update(h.digest())
    return binascii.hexlify(o.digest()[:16])


# protocol.tag: the tagged message is signed[:-1] + HEAD + tag + TAIL. The device never joins
# them: the buffer writes the pieces to flash, the state goes out in pieces (mqtt.publish).
HEAD = b',"h":"'
TAIL = b'"}'


def signed_record(prefix, seq, ts_ms, metrics):
    """What the tag of a record covers (protocol.record.signed_bytes), canonical; ValueError
    for a record protocol.record.encode refuses, its tag's 40 bytes counted in the size limit.
    buffer.put tags it and writes the wire record, identical to protocol.record.encode."""
    if type(seq) is not int or not 0 < seq <= _MAX_INT or type(ts_ms) is not int or \
            not 0 <= ts_ms <= _MAX_INT:
        raise ValueError("seq must be an int in 1..2**53-1 and t in 0..2**53-1")
    if type(metrics) is not dict or len(metrics) > _MAX_METRICS:
        raise ValueError("metrics must be an object of at most 32 entries")
    # One list of the exact size, constant separators: nothing is concatenated twice (with
    # `'"' + name + '":' + value`, an engine's 16 metrics made ~6.5 KB of garbage a record,
    # now ~2.8 KB: that garbage is the low-water mark of a small heap).
    parts = [""] * (6 + 4 * len(metrics))
    parts[0] = prefix
    parts[1] = str(seq)
    parts[2] = ',"t":'
    parts[3] = str(ts_ms)
    parts[4] = ',"m":{'
    i = 5
    for name in sorted(metrics):
        if type(name) is not str or not 0 < len(name) <= 32:
            raise ValueError("bad metric name")
        for ch in name:
            if ch not in _NAME_CHARS:
                raise ValueError("bad metric name")
        parts[i] = ',"' if i > 5 else '"'
        parts[i + 1] = name
        parts[i + 2] = '":'
        parts[i + 3] = _value(metrics[name])
        i += 4
    parts[i] = "}}"
    data = "".join(parts).encode()
    if len(data) + 40 > _MAX_RECORD_BYTES:
        raise ValueError("record too large")
    return data


def decode_ack(payload):
    """protocol.ack.decode: (incarnation, seq); incarnation 0 for a version 1 ack (a device
    of this firmware never applies one). ValueError for anything else. Terse on purpose: each
    check spelt out separately cost ~0.4 KB more heap."""
    if len(payload) > 128:
        raise ValueError("ack too large")
    try:
        obj = json.loads(payload)
        v, i, seq = obj["v"], obj.get("i", 0), obj["seq"]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ValueError("not an ack")
    if type(v) is int and type(i) is int and type(seq) is int and 0 <= seq <= _MAX_INT and (
            v == 1 and i == 0 or v == 2 and 0 < i <= 2147483647):
        return i, seq
    raise ValueError("not an ack of protocol version 1 or 2")
