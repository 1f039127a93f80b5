"""The fast path of protocol.batch.parse_record (one scanner call, one tight check) accepts
only what the full check accepts, and returns the same record; it gives up on anything else,
which then gets the full check's exact answer. The cloud's HMAC (cloud.services.tags.Mac)
gives protocol.tag's tags and verdicts."""

from __future__ import annotations

import json
import secrets

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.services.tags import Mac
from protocol import record, tag
from protocol.batch import _fast_record, parse_record
from protocol.bounds import MAX_COUNTER

KEY = bytes(range(32))
MAC = tag.Hmac(KEY)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=32)
values = st.one_of(
    st.booleans(),
    st.integers(-MAX_COUNTER, MAX_COUNTER),
    st.floats(allow_nan=False, allow_infinity=False),
)
records = st.builds(
    lambda d, i, s, t, m: record.encode(d, i, s, t, m, MAC).decode(),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
    st.integers(1, record.MAX_INCARNATION),
    st.integers(1, 2**53 - 1),
    st.integers(0, 2**53 - 1),
    st.dictionaries(names, values, max_size=8),
)


def _full(text: str) -> tuple[dict[str, object], bytes] | None:
    """The full check's answer, None when it refuses the text."""
    try:
        wire = text.encode()
        return record.decode(wire), wire
    except ValueError:
        return None


def _mutations(text: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "replace", "splice"]))
    at = data.draw(st.integers(0, len(text)))
    if kind == "flip" and at < len(text):
        return text[:at] + chr(ord(text[at]) ^ data.draw(st.integers(1, 127))) + text[at + 1:]
    if kind == "insert":
        piece = data.draw(st.sampled_from([" ", "\\ud800", "1", "-", ".5", "e9", '"', "}", "{",
                                           ',"x":1', "\u00e9", "NaN", "Infinity", "0" * 20]))
        return text[:at] + piece + text[at:]
    if kind == "delete":
        return text[:at] + text[at + 1:]
    if kind == "replace":
        old = data.draw(st.sampled_from(['"v":2', '"m":{', '"i":', '"s":', '"t":', '"h":"']))
        new = data.draw(st.sampled_from(['"v":1', '"v":2.0', '"m":{"A":1,', '"i":-',
                                         '"s":0', '"t":-1', '"c":"', '"h":"0']))
        return text.replace(old, new, 1)
    return text[:at] + text  # splice: a prefix repeated


@settings(max_examples=300, deadline=None)
@given(records, st.data())
def test_fast_path_agrees_with_the_full_check(text: str, data: st.DataObject) -> None:
    assert _fast_record(text) == _full(text) is not None  # device-form records take it
    mutated = _mutations(text, data)
    fast = _fast_record(mutated)
    if fast is not None:
        assert fast == _full(mutated)
        assert json.dumps(fast[0]) == json.dumps(_full(mutated)[0])  # types too: 1 vs 1.0
    try:
        assert parse_record(mutated) == _full(mutated)
    except ValueError:
        assert _full(mutated) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100), st.binary(max_size=300))
def test_the_clouds_hmac_is_protocol_tags(key: bytes, message: bytes) -> None:
    mac = Mac(key)
    assert mac.tag(message) == tag.Hmac(key).tag(message)
    wire = tag.append(tag.Hmac(key), b'{"x":"' + message.hex().encode() + b'"}')
    assert mac.verify(wire) and tag.verify(tag.Hmac(key), wire)
    for bad in (wire[:-3] + b"0" + wire[-2:], wire[:-1], message, wire.upper()):
        assert mac.verify(bad) == tag.verify(tag.Hmac(key), bad)


def test_a_wrong_key_or_a_changed_byte_fails() -> None:
    wire = record.encode("bike-1", 7, 1, 1, {"power": 1}, MAC)
    assert Mac(KEY).verify(wire)
    assert not Mac(secrets.token_bytes(32)).verify(wire)
    assert not Mac(KEY).verify(wire.replace(b'"power":1', b'"power":2'))
