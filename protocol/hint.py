"""The gateway's back-pressure hint: how long every device waits, at least, before reconnecting.

Published retained by the gateway on TOPIC, which every device may read under the broker's ACL
(and only the gateway may write):
    {"v":1,"min_reconnect_ms":12000}
A device keeps the last hint it read on flash and applies it to every later reconnect: its
delay is then at least min_reconnect_ms, spread with jitter over up to twice that (device/link.py),
so a restarted broker with thousands of clients sees them come back over a window instead of
at once. It can only read a new hint once connected, which is why it keeps the old one.
0 means no hint (the device's own capped, jittered backoff alone).
"""

import json

TOPIC = "fleet/hint"
VERSION = 1
MAX_HINT_MS = 600000  # ten minutes: beyond this a device would look dead to its owner
MAX_HINT_BYTES = 64


def encode(min_reconnect_ms):
    if type(min_reconnect_ms) is not int or not 0 <= min_reconnect_ms <= MAX_HINT_MS:
        raise ValueError("min_reconnect_ms must be an int in 0.." + str(MAX_HINT_MS))
    return ('{"v":1,"min_reconnect_ms":' + str(min_reconnect_ms) + "}").encode()


def decode(payload):
    """min_reconnect_ms of a hint; ValueError for anything else."""
    if len(payload) > MAX_HINT_BYTES:
        raise ValueError("hint too large")
    try:
        obj = json.loads(payload)
        version, value = obj["v"], obj["min_reconnect_ms"]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ValueError("not a hint")
    if type(version) is not int or version != VERSION or len(obj) != 2:
        raise ValueError("hint version unsupported")
    if type(value) is not int or not 0 <= value <= MAX_HINT_MS:
        raise ValueError("min_reconnect_ms must be an int in 0.." + str(MAX_HINT_MS))
    return value
