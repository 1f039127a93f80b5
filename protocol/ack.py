"""Gateway -> device application ack: the highest contiguous seq the gateway has stored.

Wire: {"v":1,"seq":N}. The device forgets records with seq <= N and nothing else.
"""

import json

MAX_ACK_BYTES = 128


def encode(seq):
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("ack seq must be an int >= 0")
    # Built by hand: MicroPython dicts do not keep key order, and the bytes are pinned by vectors.
    return ('{"v":1,"seq":' + str(seq) + "}").encode()


def decode(payload):
    if len(payload) > MAX_ACK_BYTES:
        raise ValueError("ack too large")
    try:
        obj = json.loads(payload)
    except Exception:
        raise ValueError("ack is not JSON")
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise ValueError("ack version unsupported")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("ack seq must be an int >= 0")
    return seq
