"""Telemetry record: one reading of one device, identified by (device, seq).

Wire (UTF-8 JSON, keys in this order, metrics sorted by name):
    {"v":1,"d":"bike-1","s":42,"t":1732345678123,"m":{"cadence":81,"power":212.5}}
v  format version (1)
d  device id (= certificate CN)
s  per-device sequence number, 1..2**53-1, strictly increasing, persisted across reboots
t  device clock, milliseconds since the Unix epoch, 0..2**53-1
m  metrics: name -> int | float | bool; names are 1-32 chars of [a-z0-9_]; ints within
   +-(2**53-1) (protocol.bounds), floats finite
"""

import json

from protocol.bounds import MAX_COUNTER, MAX_SEQ, MAX_TIME_MS
from protocol.topics import valid_device_id

VERSION = 1
MAX_RECORD_BYTES = 2048
MAX_METRICS = 32
MAX_NAME_LEN = 32
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"



def valid_metric_name(name):
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LEN:
        return False
    for ch in name:
        if ch not in _NAME_CHARS:
            return False
    return True


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


def encode(device, seq, ts_ms, metrics):
    """Canonical bytes of one record; raises ValueError for anything the decoder would refuse."""
    if not valid_device_id(device):
        raise ValueError("invalid device id")
    _check_seq_t(seq, ts_ms)
    check_metrics(metrics)
    names = sorted(metrics)
    parts = []
    for name in names:
        parts.append(json.dumps(name) + ":" + json.dumps(metrics[name]))
    text = (
        '{"v":1,"d":' + json.dumps(device) + ',"s":' + str(seq) + ',"t":' + str(ts_ms)
        + ',"m":{' + ",".join(parts) + "}}"
    )
    data = text.encode()
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError("record too large")
    return data


def decode(payload):
    """Parse and validate one record; returns a dict with keys v, d, s, t, m."""
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError("record too large")
    try:
        obj = json.loads(payload)
    except Exception:
        raise ValueError("record is not JSON")
    check(obj)
    return obj


def check(obj):
    """Validate a parsed record (every field, every bound); ValueError says what is wrong.
    MAX_RECORD_BYTES bounds the wire bytes a device sends, so decode() checks it and the
    first hop (the gateway) refuses larger ones; inside a batch the batch limits bound size."""
    if not isinstance(obj, dict):
        raise ValueError("record must be an object")
    if obj.get("v") != VERSION:
        raise ValueError("record version unsupported")
    for key in obj:
        if key not in ("v", "d", "s", "t", "m"):
            raise ValueError("unknown record field")
    if not valid_device_id(obj.get("d")):
        raise ValueError("invalid device id")
    _check_seq_t(obj.get("s"), obj.get("t"))
    check_metrics(obj.get("m"))
