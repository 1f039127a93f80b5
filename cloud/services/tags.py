"""Whether a record or state is the device's own: its tag (protocol.tag) under its record key.

A version 2 batch carries every record and state as the exact text the device sent; the cloud
holds each device's record key (registered by the factory's enrolment, POST /api/v1/devices)
and verifies the tag over those bytes, so a gateway can neither alter a value nor invent a
record without it being caught. The rules, per item:
- tagged (version 2), device has a key: stored only if the tag verifies ("bad tag" otherwise);
- tagged, device has no key: quarantined, nothing to verify it with;
- untagged (version 1, older firmware), device has no key: stored, as before protocol v2;
- untagged, device has a key: quarantined. Once a device is enrolled with a key, only its
  tagged items count; this is how a version 1 device migrates (docs/protocol.md).
The reasons say so in words an operator can act on.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, repeat
from operator import add, getitem, itemgetter, not_
from typing import Any, cast

from protocol import tag
from protocol.compiled import checks as _native

NO_KEY = "no record key registered for device {device}: a tagged item cannot be verified" \
    " (enrol the device's record key with POST /api/v1/devices)"
BAD_TAG = "bad tag: not what device {device} signed with its record key (changed or made up" \
    " on the way)"
UNSIGNED = "unsigned (version 1) {kind} from device {device}, which has a record key: only" \
    " tagged (version 2) items are accepted from it"


class Mac:
    """HMAC-SHA256 (RFC 2104) under one key, as protocol.tag.Hmac computes it, for CPython's
    hot path: the padded keys are hashed once and each message continues copies of those
    hash states (protocol.tag stays in the MicroPython subset, whose sha256 has no copy())."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = bytes(key).ljust(_BLOCK, b"\0")
        self._inner_pad, self._outer_pad = key.translate(_IPAD), key.translate(_OPAD)
        self._inner = hashlib.sha256(self._inner_pad)
        self._outer = hashlib.sha256(self._outer_pad)

    def tag(self, message: bytes) -> bytes:
        """The 32 hex characters (bytes) of the truncated tag of `message` (protocol.tag)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return binascii.hexlify(outer.digest()[:tag.TAG_BYTES])

    def verify(self, wire: bytes) -> bool:
        """protocol.tag.verify: True only if `wire` ends with the right tag of the rest."""
        return not self.failures([(None, _V2, wire)])

    def failures(self, items: Iterable[Sequence[Any]]) -> list[int]:
        """The places of the items (kind, object, wire, ...) that are no tagged version 2
        text whose tag verifies. The usual batch (every item version 2 with wire text) in one
        compiled loop (protocol/_fastpath.c), or in map() passes where it was not built;
        anything else item by item, verify() of each with the HMAC written out. (A tag equal
        to the HMAC's hex is lowercase hex: protocol.tag.split's hex rule needs no check of its
        own here.)"""
        items = items if isinstance(items, list) else list(items)
        wires = _version_2_wires(items)
        if wires is not None:
            if _native is not None:  # the compiled loop (protocol/_fastpath.c)
                return _native.tag_failures(self._inner_pad, self._outer_pad, wires)
            if _tag_shaped(wires):
                return self._bulk_failures(wires)
        out: list[int] = []
        inner_copy, outer_copy = self._inner.copy, self._outer.copy
        head, tail, cut = _HEAD, _TAIL, tag.TAG_BYTES
        suffix, tag_at = tag.SUFFIX_BYTES, len(_TAIL) + tag.TAG_HEX  # 40, 34 from the end
        hexlify, equal = binascii.hexlify, hmac.compare_digest
        for at, item in enumerate(items):
            wire = item[2]
            if wire is None or item[1].get("v") != 2:
                out.append(at)
                continue
            n = len(wire)
            if n < suffix + 2 or not wire.endswith(tail) or not wire.startswith(head, n - suffix):
                out.append(at)
                continue
            inner = inner_copy()
            inner.update(wire[:n - suffix] + b"}")
            outer = outer_copy()
            outer.update(inner.digest())
            if not equal(hexlify(outer.digest()[:cut]), wire[n - tag_at:n - 2]):
                out.append(at)
        return out

    def _bulk_failures(self, wires: list[bytes]) -> list[int]:
        """failures() of wires that all end in a tag member (_tag_shaped), where the compiled
        loop was not built: each step of the HMAC is one map() over all of them, so no Python
        code runs per item."""
        n = len(wires)
        inners = list(map(_copy, repeat(self._inner, n)))
        deque(map(_update, inners, map(add, map(_part, wires, repeat(_SIGNED)), repeat(b"}"))), 0)
        outers = list(map(_copy, repeat(self._outer, n)))
        deque(map(_update, outers, map(_digest, inners)), 0)
        tags = map(binascii.hexlify, map(_part, map(_digest, outers), repeat(_CUT)))
        verdicts = map(hmac.compare_digest, tags, map(_part, wires, repeat(_TAG)))
        return list(compress(range(n), map(not_, verdicts)))


def _version_2_wires(items: list[Sequence[Any]]) -> list[bytes] | None:
    """The items' wire texts when every item is version 2 with wire text, None otherwise."""
    wires = list(map(_wire_of, items))
    if not wires or None in wires \
            or set(map(dict.get, map(_object_of, items), repeat("v"))) != {2}:
        return None
    return wires


def _tag_shaped(wires: list[bytes]) -> bool:
    """Every wire ends in a tag member of the right shape (the per-item checks of failures()
    and protocol.tag.split, for all at once: their last 40 bytes, hex digits read as 0, are
    the shape's repeated)."""
    if min(map(len, wires)) < tag.SUFFIX_BYTES + 2:
        return False
    members = b"".join(map(_part, wires, repeat(_MEMBER))).translate(_HEX_AS_ZERO)
    return members == _MEMBER_SHAPE * len(wires)


_HASH = type(hashlib.sha256())
_copy, _update, _digest = _HASH.copy, _HASH.update, _HASH.digest
_object_of, _wire_of = itemgetter(1), itemgetter(2)
_part = cast("Callable[[bytes, slice], bytes]", getitem)  # bytes[slice], for map()
_MEMBER = slice(-tag.SUFFIX_BYTES, None)  # ,"h":"<32 lowercase hex>"}
_MEMBER_SHAPE = b',"h":"' + b"0" * tag.TAG_HEX + b'"}'
_HEX_AS_ZERO = bytes.maketrans(b"0123456789abcdef", b"0" * 16)
_SIGNED = slice(None, -tag.SUFFIX_BYTES)  # the signed text, but for its closing brace
_TAG = slice(-len(b'"}') - tag.TAG_HEX, -len(b'"}'))
_CUT = slice(None, tag.TAG_BYTES)

_BLOCK = 64
_IPAD = bytes((b ^ 0x36) for b in range(256))
_OPAD = bytes((b ^ 0x5C) for b in range(256))
_HEAD = b',"h":"'
_TAIL = b'"}'
_V2 = {"v": 2}


class Verifier:
    """The tag check of one device for one batch (one Mac, made on first use)."""

    def __init__(self, device_id: str, key: bytes | None) -> None:
        self.device_id = device_id
        self._key = key
        self._mac: Mac | None = None

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def problems(self, items: Iterable[Sequence[Any]]) -> list[str | None]:
        """problem() of each (kind, object, wire, ...) (a quarantine.Item), in one pass over
        the items that verify: the ingest path's per-record work, where the calls themselves
        cost as much as the checks."""
        if self._key is None:
            return [self.problem(item[0], item[1], item[2]) for item in items]
        if self._mac is None:
            self._mac = Mac(self._key)
        items = items if isinstance(items, list) else list(items)
        out: list[str | None] = [None] * len(items)
        for at in self._mac.failures(items):
            kind, obj, wire = items[at][0], items[at][1], items[at][2]
            if wire is None or obj.get("v") != 2:
                out[at] = UNSIGNED.format(kind=kind, device=self.device_id)
            else:
                out[at] = BAD_TAG.format(device=self.device_id)
        return out

    def problem(self, kind: str, obj: dict[str, object], wire: bytes | None) -> str | None:
        """Why the item is not accepted as the device's own, or None when it is."""
        if wire is None or obj.get("v") != 2:  # untagged
            if self._key is None:
                return None
            return UNSIGNED.format(kind=kind, device=self.device_id)
        if self._key is None:
            return NO_KEY.format(device=self.device_id)
        if self._mac is None:
            self._mac = Mac(self._key)
        if not self._mac.verify(wire):
            return BAD_TAG.format(device=self.device_id)
        return None
