"""The fast path of protocol.batch.parse_record (orjson, one tight loop per batch) accepts
only what the full check (the stdlib's JSON) accepts, and returns the same record; it gives
up on anything else, which then gets the full check's exact answer. Where orjson and the
stdlib read JSON differently (NaN, Infinity, 1e400, integers past 64 bits, lone surrogates,
a byte order mark) the mutations go, and so for the batch body orjson reads. The cloud's
HMAC (cloud.services.tags.Mac) gives protocol.tag's tags and verdicts."""

from __future__ import annotations

import json
import math
import secrets
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.services import quarantine
from cloud.services.tags import Mac
from protocol import batch as batch_module
from protocol import compiled, record, tag
from protocol.batch import (
    _DEVICE_FORM,
    Batch,
    BatchError,
    _check,
    _fast_batch,
    _fast_record,
    device_form_records,
    fast_records,
    parse_record,
)
from protocol.bounds import MAX_COUNTER
from protocol.topics import MAX_ID_LEN

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


# Numbers where orjson and the stdlib part ways, or nearly: past 64 bits (orjson: a float),
# past the float range, -0, NaN, and their neighbours that both read alike.
ODD_NUMBERS = [
    "18446744073709551616", "18446744073709551615", "9223372036854775808",
    "-9223372036854775809", "-9223372036854775808", "9007199254740992", "-9007199254740992",
    "1e400", "-1e400", "1E309", "1e-400", "-0", "-0.0", "0.0", "1.0", "1e2", "9.3e18",
    "9223372036854775807.0", "1.8446744073709552e19", "123456789012345678901234567890",
    "NaN", "Infinity", "-Infinity", "2.2250738585072011e-308", "0.1000000000000000055511151",
]
# Text where they part ways: escapes, surrogates (lone, reversed, paired), a BOM, whitespace.
ODD_TEXT = ["\\ud800", "\\udc00", "\\udc00\\ud800", "\\ud83d\\ude00", "\\u0061", "\\u0000",
            "\\u00e9", "\u00e9", "\\/", "\ufeff", "\x7f", "\t", "\n", "\r", "\x0c", " "]


def _mutations(text: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "replace", "splice",
                                      "number", "text", "duplicate", "bom"]))
    at = data.draw(st.integers(0, len(text)))
    if kind == "flip" and at < len(text):
        return text[:at] + chr(ord(text[at]) ^ data.draw(st.integers(1, 127))) + text[at + 1:]
    if kind == "insert":
        piece = data.draw(st.sampled_from([" ", "\\ud800", "1", "-", ".5", "e9", '"', "}", "{",
                                           ',"x":1', "\u00e9", "NaN", "Infinity", "0" * 20]))
        return text[:at] + piece + text[at:]
    if kind == "number":  # a field or metric value, or a metric added, read as an odd number
        number = data.draw(st.sampled_from(ODD_NUMBERS))
        where = data.draw(st.sampled_from(['"i":', '"s":', '"t":', '"v":', '"m":{', ":"]))
        if where == '"m":{':
            return text.replace(where, where + '"zz":' + number + ",", 1)
        head, sep, tail = text.partition(where)
        if not sep:
            return text
        end = next((n for n, c in enumerate(tail) if c in ',}'), len(tail))
        return head + sep + number + tail[end:]
    if kind == "text":  # into the device id or a metric name, or the tag
        piece = data.draw(st.sampled_from(ODD_TEXT))
        where = data.draw(st.sampled_from(['"d":"', '"m":{"', '"h":"']))
        return text.replace(where, where + piece, 1)
    if kind == "duplicate":  # a member again: before the tag, first, or the tag early
        member = data.draw(st.sampled_from(['"s":1', '"v":1', '"m":{}', '"d":"x"', '"t":1e400',
                                            '"h":"' + "0" * 32 + '"', '"i":-0', '"m":{"a":NaN}']))
        place = data.draw(st.sampled_from(["first", "before tag"]))
        if place == "first":
            return "{" + member + "," + text[1:]
        cut = text.rfind(',"h":')
        return text[:cut] + "," + member + text[cut:] if cut > 0 else text
    if kind == "bom":
        return "\ufeff" + text
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
    # the batch's loop gives each item the answer the one-item call gives
    assert fast_records([text, mutated, 7, None]) == [_fast_record(text), fast, None, None]


@settings(max_examples=300, deadline=None)
@given(records)
def test_what_the_device_form_matches_the_full_check_accepts(text: str) -> None:
    """The compiled pattern of the device's form decides alone (orjson only reads): all it
    matches is valid, and the records a device writes match it but for long numbers."""
    wire = text.encode()
    if _DEVICE_FORM.fullmatch(wire):
        assert _fast_record(text) == _full(text) is not None
    obj = json.loads(text)
    numbers = [obj["s"], obj["t"], *(v for v in obj["m"].values() if type(v) is int)]
    if all(abs(n) < 10**15 for n in numbers) and all(
        type(v) is not float or "e" in repr(v) or abs(v) < 1e15 for v in obj["m"].values()
    ) and "\\" not in text and obj["i"] < 10**9:
        assert _DEVICE_FORM.fullmatch(wire)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, min_size=1, max_size=8), st.data())
def test_a_batch_read_at_once_reads_as_each_record_alone(
    texts: list[str], data: st.DataObject
) -> None:
    """A batch whose records are all in the device's form is read in one pass per step
    (device_form_records); any other batch item by item. Either way each record gets the
    answer it gets alone, in order, and a batch with one record off the form is not read at
    once."""
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(texts) - 1))
        texts = [*texts[:at], _mutations(texts[at], data), *texts[at + 1:]]
    alone = [_fast_record(text) for text in texts]
    assert fast_records(texts) == alone
    with mock.patch.object(batch_module, "_native", None):
        assert fast_records(texts) == alone
        in_python = device_form_records(texts)
    compiled_reading = device_form_records(texts)  # the same where the module was not built
    for at_once in (in_python, compiled_reading):
        if at_once is not None:
            assert all(_DEVICE_FORM.fullmatch(text.encode()) for text in texts)
            assert list(zip(*at_once, strict=True)) == alone
            for text, obj in zip(texts, at_once[0], strict=True):  # the stdlib's, types too
                assert json.dumps(obj) == json.dumps(json.loads(text))
        elif all(_DEVICE_FORM.fullmatch(text.encode()) for text in texts):
            # the form matched but a float was refused: one past the float range (or, for
            # the compiled reading, one written with 64 characters or more)
            assert any(a is None for a in alone) or in_python is not None


def test_a_batch_groups_its_records_by_device_in_order() -> None:
    """The at-once path keeps each device's records in batch order, runs split or not."""
    texts = [record.encode(d, 1, s, s, {"p": s}, MAC).decode()
             for d, s in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 9), ("b", 2)]]
    batch = Batch(gateway="gw-1", seq=1, prev="0" * 64, created_ms=1, records=tuple(texts))
    assert device_form_records(texts) is not None
    got = quarantine.sort(batch, "gw-1", 1)
    assert {d: [i.obj["s"] for i in items] for d, items in got.records.items()} == \
        {"a": [1, 2, 3], "b": [1, 2], "c": [9]}
    assert [i.raw for i in got.records["a"]] == [texts[0], texts[2], texts[3]]
    assert all(i.kind == "record" and i.wire == i.raw.encode() for i in got.records["b"])
    assert not got.held


def _compiled_form(wires: list[bytes]) -> int:
    assert compiled.checks is not None
    return compiled.checks.device_form(wires, MAX_ID_LEN, record.MAX_NAME_LEN,
                                       record.MAX_METRICS)


def _pattern_form(wires: list[bytes]) -> int:
    return next((at for at, wire in enumerate(wires) if not _DEVICE_FORM.fullmatch(wire)), -1)


needs_compiled = pytest.mark.skipif(compiled.checks is None,
                                    reason="protocol/_fastpath.c was not built")


@needs_compiled
@settings(max_examples=1000, deadline=None)
@given(records, st.data())
def test_the_compiled_form_is_the_pattern(text: str, data: st.DataObject) -> None:
    """protocol/_fastpath.c's matcher of the device's form answers as _DEVICE_FORM does, on
    the device's records and on every mutation of them (the first one off the form, too)."""
    mutated = _mutations(text, data).encode("utf-8", "surrogatepass")
    wires = [text.encode(), mutated, text.encode()]
    assert _compiled_form(wires) == _pattern_form(wires)
    assert _compiled_form([mutated]) == _pattern_form([mutated])


# Each rule of the form at its edge: one side in, one side out.
_EDGES = [
    ("d", "a" * MAX_ID_LEN), ("d", "a" * (MAX_ID_LEN + 1)), ("d", "a-_9"), ("d", "-a"),
    ("d", "_a"), ("d", ""), ("d", "a b"), ("d", "\u0061"), ("i", "999999999"),
    ("i", "1000000000"), ("i", "0"), ("i", "01"), ("s", "9" * 15), ("s", "1" + "0" * 15),
    ("t", "0"), ("t", "00"), ("t", "9" * 15), ("t", "9" * 16), ("t", "-1"),
]
_VALUES = ["0", "-0", "01", "1.", "1.5", ".5", "1e", "1e+", "1e-7", "1E9", "-1.5e+300", "true",
           "tru", "false", "null", "9" * 15, "9" * 16, "-" + "9" * 15, "1.0e", "--1", "+1",
           '"x"', "[]", "{}", "1 "]


@needs_compiled
@pytest.mark.parametrize("field,text", _EDGES)
def test_the_compiled_form_at_each_field_edge(field: str, text: str) -> None:
    wire = record.encode("bike-1", 7, 5, 5, {"power": 1}, MAC)
    head, sep, tail = wire.partition(f'"{field}":'.encode())
    if field == "d":
        end = tail.index(b'"', 1)
        changed = head + sep + b'"' + text.encode() + tail[end:]
    else:
        end = next(n for n, c in enumerate(tail) if c in b",}")
        changed = head + sep + text.encode() + tail[end:]
    assert _compiled_form([changed]) == _pattern_form([changed])


@needs_compiled
@pytest.mark.parametrize("value", _VALUES)
@pytest.mark.parametrize("names", [1, record.MAX_METRICS, record.MAX_METRICS + 1])
def test_the_compiled_form_of_metrics(value: str, names: int) -> None:
    metrics = ",".join(f'"m{n}":{value}' for n in range(names))
    for name in ("a" * record.MAX_NAME_LEN, "a" * (record.MAX_NAME_LEN + 1), "A", "a-b", ""):
        for body in (metrics, f'"{name}":1', "", f'{metrics},'):
            wire = (b'{"v":2,"d":"bike-1","i":7,"s":5,"t":5,"m":{' + body.encode()
                    + b'},"h":"' + b"0" * 32 + b'"}')
            assert _compiled_form([wire]) == _pattern_form([wire]), wire


_NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).flatmap(
        lambda x: st.sampled_from([repr(x), f"{x:.17g}", f"{x:e}", f"{x:E}", f"{x:.3e}"])),
    st.integers(-(10**15) + 1, 10**15 - 1).map(str),
    st.from_regex(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)


@needs_compiled
@settings(max_examples=500, deadline=None)
@given(st.lists(_NUMBER_TEXT, min_size=1, max_size=4), st.booleans())
def test_the_compiled_reading_of_numbers_is_the_stdlibs(numbers: list[str], run: bool) -> None:
    """Each metric reads as the stdlib's JSON decoder reads it: an int without a fraction or an
    exponent, else the correctly rounded float; a float past the float range leaves the batch
    to the full check (which refuses that record alone)."""
    metrics = ",".join(f'"m{n}":{text}' for n, text in enumerate(numbers))
    wire = ('{"v":2,"d":"bike-1","i":7,"s":5,"t":5,"m":{' + metrics + '},"h":"' + "0" * 32
            + '"}')
    texts = [wire, wire] if run else [wire]
    assert compiled.checks is not None
    got = compiled.checks.device_records(texts, MAX_ID_LEN, record.MAX_NAME_LEN,
                                         record.MAX_METRICS, record.MAX_RECORD_BYTES)
    if not _DEVICE_FORM.fullmatch(wire.encode()):
        assert got is None
        return
    expected = json.loads(wire)
    if any(type(v) is float and not math.isfinite(v) for v in expected["m"].values()):
        assert got is None
        return
    if got is None:  # the one other way out: a float written with 64 characters or more
        assert any(len(text) >= 64 for text in numbers)
        return
    records, wires = got
    assert wires == [text.encode() for text in texts]
    assert [json.dumps(r) for r in records] == [json.dumps(expected)] * len(texts)
    assert all(r == expected for r in records)


@pytest.mark.parametrize("number", ODD_NUMBERS)
@pytest.mark.parametrize("field", ["metric", "s", "t", "i"])
def test_odd_numbers_get_the_full_checks_answer(number: str, field: str) -> None:
    signed = record.signed_bytes("bike-1", 7, 5, 5, {"power": 1}, ).decode()
    if field == "metric":
        signed = signed.replace('"power":1', '"power":' + number)
    else:
        signed = signed.replace(f'"{field}":{5 if field != "i" else 7}', f'"{field}":{number}')
    text = tag.append(MAC, signed.encode()).decode()
    fast = _fast_record(text)
    full = _full(text)
    if fast is not None:
        assert fast == full and json.dumps(fast[0]) == json.dumps(full[0])
    try:
        got = parse_record(text)
    except ValueError as exc:
        assert full is None
        with pytest.raises(ValueError) as refused:
            record.decode(text.encode())
        assert str(exc) == str(refused.value)  # the full check's exact reason
    else:
        assert got == full and json.dumps(got[0]) == json.dumps(full[0])
    # a float metric of 2**63 or more (orjson's reading of an integer past 64 bits) is valid
    # in its own right: it must still be accepted, by the full check
    if field == "metric" and number in ("9.3e18", "1.8446744073709552e19"):
        assert fast is not None


# -- the batch body: orjson's reading is used only where every answer stays the stdlib's --

def _opened(obj: object) -> str:
    """What the batch check makes of a batch body's JSON value: its refusal or the value."""
    try:
        _check(obj)
    except BatchError as exc:
        return "refused: " + str(exc)
    return json.dumps(obj)


BATCH = ('{"created":1,"gateway":"gw-1","prev":"' + "0" * 64 + '","records":[%s],'
         '"seq":3,"states":[%s],"v":2}')


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_batch_body_reads_as_the_stdlib_reads_it(data: st.DataObject) -> None:
    item = st.one_of(
        records.map(json.dumps),
        st.sampled_from(ODD_TEXT).map(lambda t: '"' + t + '"'),
        st.sampled_from(ODD_NUMBERS),
        st.just('{"v":2,"s":18446744073709551616}'),
        st.just("null"),
    )
    recs = data.draw(st.lists(item, max_size=4))
    states = data.draw(st.lists(item, max_size=2))
    text = BATCH % (",".join(recs), ",".join(states))
    field = data.draw(st.sampled_from(["v", "seq", "created", "gateway", "prev", "none"]))
    if field != "none":
        value = data.draw(st.sampled_from(ODD_NUMBERS + ["2", "3", "1", '"2"', "[]"]))
        head, sep, tail = text.partition(f'"{field}":')
        end = next(n for n, c in enumerate(tail) if c in ",}")
        text = head + sep + value + tail[end:]
    if data.draw(st.booleans()):
        text = text.replace('{"created":1,', '{"created":1,"seq":2,', 1)  # a duplicate key
    body = text.encode()
    if data.draw(st.booleans()):
        body = data.draw(st.sampled_from([b"\xef\xbb\xbf", b" ", b"\n"])) + body
    try:
        stdlib: object = json.loads(body)
    except ValueError:
        assert _fast_batch(body) is None  # it is not JSON: the stdlib's words say so
        return
    fast = _fast_batch(body)
    if fast is not None:
        assert _opened(fast) == _opened(stdlib)


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
