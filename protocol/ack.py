"""Gateway -> device application ack: the highest contiguous seq the gateway has stored of one
incarnation of the device.

Wire: {"v":2,"i":1234567,"seq":N}. The device forgets records of incarnation i with seq <= N
and nothing else; an ack for another incarnation (an older life of a wiped device) is ignored.
Version 1, {"v":1,"seq":N}, is what devices on older firmware (incarnation 0) get.
"""

import json

from protocol.bounds import MAX_SEQ

MAX_ACK_BYTES = 128
MAX_INCARNATION = 2147483647


def encode(seq, incarnation=0):
    if type(seq) is not int or seq < 0 or seq > MAX_SEQ:
        raise ValueError("ack seq must be an int in 0..2**53-1")
    if type(incarnation) is not int or incarnation < 0 or incarnation > MAX_INCARNATION:
        raise ValueError("ack incarnation must be an int in 0..2**31-1")
    # Built by hand: MicroPython dicts do not keep key order, and the bytes are pinned by vectors.
    if incarnation == 0:
        return ('{"v":1,"seq":' + str(seq) + "}").encode()
    return ('{"v":2,"i":' + str(incarnation) + ',"seq":' + str(seq) + "}").encode()


def decode(payload):
    """(incarnation, seq); incarnation 0 for a version 1 ack. ValueError for anything else."""
    if len(payload) > MAX_ACK_BYTES:
        raise ValueError("ack too large")
    try:
        obj = json.loads(payload)
    except Exception:
        raise ValueError("ack is not JSON")
    if not isinstance(obj, dict) or obj.get("v") not in (1, 2) or type(obj.get("v")) is not int:
        raise ValueError("ack version unsupported")
    seq = obj.get("seq")
    if type(seq) is not int or seq < 0 or seq > MAX_SEQ:
        raise ValueError("ack seq must be an int in 0..2**53-1")
    if obj["v"] == 1:
        return 0, seq
    inc = obj.get("i")
    if type(inc) is not int or inc < 1 or inc > MAX_INCARNATION:
        raise ValueError("ack incarnation must be an int in 1..2**31-1")
    return inc, seq
