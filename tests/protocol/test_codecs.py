"""Property tests of the device-side codecs: whatever arrives, the answer is a value or a
ValueError, never another exception; what is encoded decodes to the same thing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ack, config, record, state, tag, topics

ids = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z")
names = st.from_regex(r"\A[a-z0-9_]{1,12}\Z")
values = st.one_of(st.integers(-(2**40), 2**40), st.booleans(),
                   st.floats(allow_nan=False, allow_infinity=False, width=64))


MAC = tag.Hmac(bytes(range(32)))


@given(ids, st.integers(1, 2**31 - 1), st.integers(1, 2**53 - 1), st.integers(0, 2**53 - 1),
       st.dictionaries(names, values, max_size=8))
def test_record_round_trip(device: str, inc: int, seq: int, ts: int, metrics: dict) -> None:
    wire = record.encode(device, inc, seq, ts, metrics, MAC)
    got = record.decode(wire)
    assert (got["d"], got["i"], got["s"], got["t"], got["m"]) == (device, inc, seq, ts, metrics)
    # Canonical: encoding the decoded record again gives the same bytes, tag included.
    assert record.encode(got["d"], got["i"], got["s"], got["t"], got["m"], MAC) == wire
    assert tag.verify(MAC, wire)


@given(st.binary(min_size=1, max_size=60))
def test_a_tag_covers_every_byte(change: bytes) -> None:
    wire = record.encode("bike-1", 7, 1, 2, {"x": 1}, MAC)
    signed, _ = tag.split(wire)
    for at in (0, len(signed) // 2, len(signed) - 2):
        altered = signed[:at] + change + signed[at + 1:]
        if altered != signed:
            assert not tag.verify(MAC, altered[:-1] + wire[len(signed) - 1:])


@given(st.binary(max_size=300))
def test_any_bytes_give_a_record_or_a_value_error(data: bytes) -> None:
    for decode in (record.decode, ack.decode, state.decode):
        try:
            decode(data)
        except ValueError:
            pass


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=10))
def test_any_json_gives_a_record_or_a_value_error(obj: object) -> None:
    try:
        record.decode(json.dumps(obj).encode())
    except ValueError:
        pass


@given(st.text(max_size=80))
def test_topic_parse_refuses_anything_but_fleet_topics(name: str) -> None:
    try:
        device, kind = topics.parse(name)
    except ValueError:
        return
    assert topics.topic(device, kind) == name


def test_device_ids_cannot_carry_wildcards_or_paths() -> None:
    for bad in ("", "a/b", "+", "#", "a+b", "../x", "-x", "_x", "x" * 65, "é"):
        assert not topics.valid_device_id(bad)
    assert topics.valid_device_id("bike-1")


@given(st.dictionaries(st.text(max_size=15), st.integers(-10, 10**7) | st.text(max_size=3), max_size=5))
def test_settings_are_checked(settings: dict) -> None:
    try:
        config.check_settings(settings)
    except ValueError:
        return
    for name, value in settings.items():
        low, high = config.SETTINGS[name]
        assert low <= value <= high


def test_state_carries_why_the_device_reset_and_why_its_link_failed() -> None:
    base = {"v": 1, "d": "bike-1", "reset_cause": "memory", "resets": 3,
            "link_error": "connect failed -29312", "link_failures": 5}
    assert state.decode(state.encode(base)) == base
    for cause in state.RESET_CAUSES:
        state.check({**base, "reset_cause": cause})
    for bad in ({"reset_cause": "gremlins"}, {"resets": -1}, {"link_failures": "5"},
                {"link_error": "x" * 201}):
        with pytest.raises(ValueError):
            state.check({**base, **bad})
