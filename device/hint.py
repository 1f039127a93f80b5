"""The gateway's back-pressure hint (protocol.hint) on the device: decoded when it arrives on
fleet/hint, kept in data/hint.json ({"min_reconnect_ms": N}, replaced atomically) and read at
every start, so a device that cannot reach its broker still spreads its reconnects over the
window the gateway last asked for (link.py applies it). Imported when a hint arrives and at a
start, unloaded again: nothing of it sits next to the running agent.
"""

import json

from device import port

FILE = "/hint.json"
_MAX_MS = 600000  # protocol.hint.MAX_HINT_MS


def decode(payload):
    """protocol.hint.decode: min_reconnect_ms of a hint; ValueError for anything else."""
    if len(payload) > 64:  # protocol.hint.MAX_HINT_BYTES
        raise ValueError("hint too large")
    try:
        obj = json.loads(payload)
        v, ms = obj["v"], obj["min_reconnect_ms"]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ValueError("not a hint")
    if type(v) is int and v == 1 and len(obj) == 2 and type(ms) is int and 0 <= ms <= _MAX_MS:
        return ms
    raise ValueError("not a hint of version 1 with min_reconnect_ms in 0..600000")


def read(data_dir):
    """The hint kept on flash; 0 (none) if there is none or it is not ours."""
    try:
        ms = json.loads(port.read_bytes(data_dir + FILE))["min_reconnect_ms"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return ms if type(ms) is int and 0 <= ms <= _MAX_MS else 0


def receive(data_dir, payload, current, emit):
    """A hint arrived: the value to apply (kept on flash when it is new), or `current` for a
    bad one (reported, ignored)."""
    try:
        ms = decode(bytes(payload))
    except ValueError as e:
        emit({"event": "bad_hint", "reason": str(e)})
        return current
    if ms != current:  # the retained hint comes back on every connect
        port.write_atomic(data_dir + FILE, b'{"min_reconnect_ms":%d}' % ms)
        emit({"event": "hint", "min_reconnect_ms": ms})
    return ms
