"""The device's own codecs for the messages on its hot path: the tagged v2 record and state,
and the v2 ack.

protocol.record / protocol.ack / protocol.state define these formats; this module produces
byte-identical output (tests/device checks it against protocol and tests/vectors on both
interpreters) in a fraction of the heap: importing protocol.record + topics + ack costs ~6 KB
of the 64 KB a small device has. The tag itself is protocol.tag's (its Hmac object is built
once per start from the image's record key: app.py). Validation matches
protocol.record.encode: a record the gateway would refuse is never buffered, because an
unacceptable record would block the ack stream behind it forever.
"""

import json

from device.port import const

_MAX_RECORD_BYTES = const(2048)
_MAX_METRICS = const(32)
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_INF = float("inf")
_MAX_INT = 9007199254740991  # protocol.bounds: seq, t and int metrics (a plain int: not a const)
_MAX_INCARNATION = 2147483647  # protocol.record.MAX_INCARNATION


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
    if type(incarnation) is not int or not 0 < incarnation <= _MAX_INCARNATION:
        raise ValueError("incarnation must be an int in 1..2**31-1")
    return '{"v":2,"d":"' + device_id + '","i":' + str(incarnation) + ',"s":'


def tagged(mac, signed):
    """protocol.tag.append: `signed` (a JSON object's bytes) with the tag of `mac` (a
    protocol.tag.Hmac) as its last member. One join: no intermediate copies."""
    return b"".join((signed[:-1], b',"h":"', mac.tag(signed), b'"}'))


def encode_record(prefix, seq, ts_ms, metrics, mac):
    """Canonical tagged record bytes, identical to protocol.record.encode; ValueError
    otherwise."""
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
    data = tagged(mac, "".join(parts).encode())
    if len(data) > _MAX_RECORD_BYTES:
        raise ValueError("record too large")
    return data


def decode_ack(payload):
    """protocol.ack.decode: (incarnation, seq); incarnation 0 for a version 1 ack (a device
    of this firmware never applies one). ValueError for anything else."""
    if len(payload) > 128:
        raise ValueError("ack too large")
    try:
        obj = json.loads(payload)
    except ValueError:
        raise ValueError("ack is not JSON")
    if type(obj) is not dict:
        raise ValueError("ack version unsupported")
    v = obj.get("v")
    seq = obj.get("seq")
    if type(v) is not int or v not in (1, 2):
        raise ValueError("ack version unsupported")
    if type(seq) is not int or not 0 <= seq <= _MAX_INT:
        raise ValueError("ack seq must be an int in 0..2**53-1")
    if v == 1:
        return 0, seq
    inc = obj.get("i")
    if type(inc) is not int or not 0 < inc <= _MAX_INCARNATION:
        raise ValueError("ack incarnation must be an int in 1..2**31-1")
    return inc, seq
