"""Device tags: an HMAC-SHA256 (RFC 2104) of what a device sends, under its own record key.

Each device gets a secret 32-byte record key at provisioning; the cloud holds a copy, the
gateway never does. Every uplink message the device signs (records, states) ends with the tag:

    <signed text without its closing brace>,"h":"<32 lowercase hex>"}

and the tag is the first 16 bytes of HMAC-SHA256(key, signed text), where the signed text is
the message with the `,"h":"..."` member removed - itself a valid JSON object. The rule works
on the exact bytes, so neither the device's key order nor anyone's float formatting matters:
the gateway forwards the bytes untouched and the cloud verifies those bytes.

MicroPython/CPython common subset (hashlib.sha256 and binascii only; MicroPython's sha256 has
no copy(), so the padded keys are computed once per key and hashed in front of each message).
"""

import binascii
import hashlib

KEY_BYTES = 32
TAG_BYTES = 16
TAG_HEX = 2 * TAG_BYTES
_BLOCK = 64
_HEAD = b',"h":"'
_TAIL = b'"}'
SUFFIX_BYTES = len(_HEAD) + TAG_HEX + len(_TAIL)  # 40
_HEX = b"0123456789abcdef"


class Hmac:
    """HMAC-SHA256 under one key, with the inner and outer padded keys computed once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = bytes(key) + bytes(_BLOCK - len(key))
        self._inner = bytes(b ^ 0x36 for b in key)
        self._outer = bytes(b ^ 0x5C for b in key)

    def digest(self, message):
        inner = hashlib.sha256(self._inner)
        inner.update(message)
        outer = hashlib.sha256(self._outer)
        outer.update(inner.digest())
        return outer.digest()

    def tag(self, message):
        """The 32 hex characters (bytes) of the truncated tag of `message`."""
        return binascii.hexlify(self.digest(message)[:TAG_BYTES])


def append(mac, signed):
    """`signed` (a JSON object's bytes, ending in '}') with its tag as the last member."""
    if not signed or signed[-1:] != b"}" or len(signed) < 2:
        raise ValueError("signed text must be a JSON object")
    return signed[:-1] + _HEAD + mac.tag(signed) + _TAIL


def split(wire):
    """(signed text, tag hex) of a tagged message; ValueError when it carries no valid tag
    member at its end (missing, short, not lowercase hex)."""
    wire = bytes(wire)
    n = len(wire)
    if n < SUFFIX_BYTES + 2 or wire[n - len(_TAIL):] != _TAIL:
        raise ValueError("no tag")
    head_at = n - SUFFIX_BYTES
    if wire[head_at:head_at + len(_HEAD)] != _HEAD:
        raise ValueError("no tag")
    tag = wire[head_at + len(_HEAD):n - len(_TAIL)]
    if tag.strip(_HEX):  # something left: a byte that is no lowercase hex digit
        raise ValueError("tag must be 32 lowercase hex characters")
    return wire[:head_at] + b"}", tag


def verify(mac, wire):
    """True only if `wire` ends with the right tag of the rest under this key."""
    try:
        signed, tag = split(wire)
    except ValueError:
        return False
    return _equal(mac.tag(signed), tag)


def _equal(a, b):
    # Constant time in the tag's content (the length is public).
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0
