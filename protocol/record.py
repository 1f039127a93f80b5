"""Telemetry record: one reading of one device, identified by (device, incarnation, seq).

Wire, version 2 (UTF-8 JSON, keys in this order, metrics sorted by name, the tag last):
    {"v":2,"d":"bike-1","i":1234567,"s":42,"t":1732345678123,"m":{"cadence":81,"power":212.5},
     "h":"<32 lowercase hex>"}
v  format version (2)
d  device id (= certificate CN)
i  incarnation, 1..2**31-1: drawn by the device from its RNG when its buffer is first used (new
   or wiped) and kept with the buffer, so a wiped device never repeats an identity
s  sequence number within the incarnation, 1..2**53-1, strictly increasing, persisted
t  device clock, milliseconds since the Unix epoch, 0..2**53-1
m  metrics: name -> int | float | bool; names are 1-32 chars of [a-z0-9_]; ints within
   +-(2**53-1) (protocol.bounds), floats finite
h  the device's tag (protocol.tag) over the record without this member

A consent record (protocol.consent) is a version 2 record with `c` in place of `m`, in the same
stream (same seq space, buffer, acks and tag), so a change of consent is delivered exactly
once and in order with the records sampled around it:
    {"v":2,"d":"bike-1","i":1234567,"s":43,"t":1732345679000,
     "c":{"cfg":3,"origin":"device","tier":"usage"},"h":"<32 lowercase hex>"}
c  tier: the tier in effect from this record on; origin: "device" (the customer on the
   product) or "cloud" (a narrowing signed down from the customer's account); cfg: the config
   version the device had applied when it changed, or the version of a widening config it
   refused while restating its own tier (the cloud lifts its own narrowing once a device's
   consent record shows it has seen it). Keys sorted, as written.

Version 1 (no i, no h) is still decoded, as incarnation 0, for devices on older firmware; the
cloud stores it only for a device that has no record key registered.
"""

import json

from protocol import consent as consent_tiers
from protocol import tag as tag_codec
from protocol.bounds import MAX_CONFIG_VERSION, MAX_COUNTER, MAX_SEQ, MAX_TIME_MS
from protocol.topics import valid_device_id

VERSION = 2
VERSIONS = (1, 2)
MAX_INCARNATION = 2147483647  # 2**31 - 1
MAX_RECORD_BYTES = 2048
MAX_METRICS = 32
MAX_NAME_LEN = 32
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"



def valid_metric_name(name):
    # strip() leaves nothing only when every character is allowed: the check runs in C, and
    # the gateway checks every name of every record.
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME_LEN and not name.strip(_NAME_CHARS)


def _is_int(value):
    return type(value) is int


def _valid_value(value):
    t = type(value)
    if t is bool:
        return True
    if t is int:
        return -MAX_COUNTER <= value <= MAX_COUNTER
    if t is float:
        # NaN and infinities have no JSON form.
        return value == value and value not in (float("inf"), float("-inf"))
    return False


def check_metrics(metrics):
    if not isinstance(metrics, dict):
        raise ValueError("metrics must be an object")
    if len(metrics) > MAX_METRICS:
        raise ValueError("too many metrics")
    for name in metrics:
        if not valid_metric_name(name):
            raise ValueError("bad metric name")
        if not _valid_value(metrics[name]):
            raise ValueError("metric values must be numbers (ints within 2**53) or booleans")


def _check_seq_t(seq, ts):
    if not _is_int(seq) or seq < 1 or seq > MAX_SEQ:
        raise ValueError("seq must be an int in 1..2**53-1")
    if not _is_int(ts) or ts < 0 or ts > MAX_TIME_MS:
        raise ValueError("t must be an int in 0..2**53-1")


def encode(device, incarnation, seq, ts_ms, metrics, mac):
    """Canonical tagged bytes of one v2 record (`mac`: a protocol.tag.Hmac under the device's
    record key); raises ValueError for anything the decoder would refuse."""
    signed = signed_bytes(device, incarnation, seq, ts_ms, metrics)
    data = tag_codec.append(mac, signed)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError("record too large")
    return data


def signed_bytes(device, incarnation, seq, ts_ms, metrics):
    """The canonical v2 record without its tag: what the tag covers."""
    if not valid_device_id(device):
        raise ValueError("invalid device id")
    _check_incarnation(incarnation)
    _check_seq_t(seq, ts_ms)
    check_metrics(metrics)
    parts = []
    for name in sorted(metrics):
        parts.append(json.dumps(name) + ":" + json.dumps(metrics[name]))
    return (
        '{"v":2,"d":' + json.dumps(device) + ',"i":' + str(incarnation) + ',"s":' + str(seq)
        + ',"t":' + str(ts_ms) + ',"m":{' + ",".join(parts) + "}}"
    ).encode()


def consent_signed_bytes(device, incarnation, seq, ts_ms, tier, origin, cfg):
    """The canonical consent record (version 2, `c` for `m`) without its tag."""
    if not valid_device_id(device):
        raise ValueError("invalid device id")
    _check_incarnation(incarnation)
    _check_seq_t(seq, ts_ms)
    check_consent({"cfg": cfg, "origin": origin, "tier": tier})
    return (
        '{"v":2,"d":' + json.dumps(device) + ',"i":' + str(incarnation) + ',"s":' + str(seq)
        + ',"t":' + str(ts_ms) + ',"c":{"cfg":' + str(cfg) + ',"origin":"' + origin
        + '","tier":"' + tier + '"}}'
    ).encode()


def encode_consent(device, incarnation, seq, ts_ms, tier, origin, cfg, mac):
    """Canonical tagged bytes of one consent record."""
    return tag_codec.append(mac, consent_signed_bytes(device, incarnation, seq, ts_ms, tier,
                                                      origin, cfg))


def check_consent(c):
    """Validate the `c` member of a consent record."""
    if not isinstance(c, dict) or len(c) != 3:
        raise ValueError("consent must be an object of cfg, origin and tier")
    if c.get("tier") not in consent_tiers.TIERS:
        raise ValueError("unknown consent tier")
    if c.get("origin") not in consent_tiers.ORIGINS:
        raise ValueError("unknown consent origin")
    cfg = c.get("cfg")
    if type(cfg) is not int or cfg < 0 or cfg > MAX_CONFIG_VERSION:
        raise ValueError("consent cfg must be an int in 0..2**31-1")


def is_consent(obj):
    """True for a checked consent record (a `c` member, no metrics)."""
    return "c" in obj


def encode_v1(device, seq, ts_ms, metrics):
    """A version 1 record (untagged), as older firmware sends it."""
    if not valid_device_id(device):
        raise ValueError("invalid device id")
    _check_seq_t(seq, ts_ms)
    check_metrics(metrics)
    parts = []
    for name in sorted(metrics):
        parts.append(json.dumps(name) + ":" + json.dumps(metrics[name]))
    data = (
        '{"v":1,"d":' + json.dumps(device) + ',"s":' + str(seq) + ',"t":' + str(ts_ms)
        + ',"m":{' + ",".join(parts) + "}}"
    ).encode()
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError("record too large")
    return data


def _check_incarnation(value):
    if not _is_int(value) or value < 1 or value > MAX_INCARNATION:
        raise ValueError("incarnation must be an int in 1..2**31-1")


def decode(payload):
    """Parse and validate one record (v1 or v2); returns its dict. The tag's format is
    checked, not the tag itself: only the device and the cloud hold the key."""
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError("record too large")
    try:
        obj = json.loads(payload)
    except Exception:
        raise ValueError("record is not JSON")
    check(obj)
    if obj["v"] == 2:
        tag_codec.split(payload)  # ValueError: the tag is not the last member, or malformed
    return obj


_V1_FIELDS = ("v", "d", "s", "t", "m")
_V2_FIELDS = ("v", "d", "i", "s", "t", "m", "c", "h")


def check(obj):
    """Validate a parsed record (every field, every bound); ValueError says what is wrong.
    MAX_RECORD_BYTES bounds the wire bytes a device sends, so decode() checks it and the
    first hop (the gateway) refuses larger ones; inside a batch the batch limits bound size."""
    if not isinstance(obj, dict):
        raise ValueError("record must be an object")
    version = obj.get("v")
    if type(version) is not int or version not in VERSIONS:
        raise ValueError("record version unsupported")
    fields = _V2_FIELDS if version == 2 else _V1_FIELDS
    for key in obj:
        if key not in fields:
            raise ValueError("unknown record field")
    if not valid_device_id(obj.get("d")):
        raise ValueError("invalid device id")
    if version == 2:
        _check_incarnation(obj.get("i"))
        h = obj.get("h")
        if not isinstance(h, str) or len(h) != tag_codec.TAG_HEX:
            raise ValueError("tag must be 32 lowercase hex characters")
    _check_seq_t(obj.get("s"), obj.get("t"))
    if version == 2 and "c" in obj:
        if "m" in obj:
            raise ValueError("a record carries metrics or consent, not both")
        check_consent(obj["c"])
    else:
        check_metrics(obj.get("m"))


def incarnation(obj):
    """The incarnation of a checked record (0 for version 1)."""
    return obj.get("i", 0)
