"""Gateway -> cloud batch: canonical bytes, zlib-compressed, Ed25519-signed, hash-chained.

CPython only. Canonical bytes are the UTF-8 JSON of
    {"created":<ms>,"gateway":"gw-1","prev":"<sha256 hex of the previous batch's canonical
     bytes, or 64 zeros for the first>","records":["<record wire text>",...],
     "seq":<batch seq >= 1>,"states":["<state wire text>",...],"v":2}
with keys sorted at every level, no spaces, non-ASCII kept as UTF-8. Version 2 carries each
record and state as the exact text the device sent, so the cloud verifies the device's tag
(protocol.tag) over the very bytes the device signed; the gateway can neither alter nor invent
one unseen. Version 1 batches (records and states as JSON objects, from gateways on older
software) are still accepted: their items can only be version 1 records and states.

HTTP: POST /api/v1/ingest, body = zlib(canonical), headers
    Content-Type: application/vnd.fleetloop.batch+zlib
    X-Fleetloop-Gateway: <gateway id>
    X-Fleetloop-Signature: <base64 Ed25519 signature of the canonical (uncompressed) bytes>
    Authorization: Bearer <gateway token>
The batch digest (sha256 hex of canonical bytes) is its id; the next batch carries it as `prev`.

One bad record never refuses a batch: the batch check covers only the batch's own fields and
shape; each record and state is checked on its own (`parse_record`, `parse_state`) and one
that fails is quarantined with its reason by the receiver while the rest is stored.

A batch the cloud refuses for a batch-level reason (anything but an authentication problem or
a chain conflict) is dead-lettered by the gateway, which then sends a signed gap in its place:
    POST /api/v1/ingest/gap, body = canonical JSON of
    {"created":<ms>,"digest":"<digest of the refused batch>","gateway":"gw-1","kind":"gap",
     "prev":"<digest of the batch before it>","reason":"<the cloud's answer>","records":N,
     "seq":<the refused batch's seq>,"states":N,"status":<HTTP status>,"v":1}
with the same headers (Content-Type application/vnd.fleetloop.gap+json). The cloud records the
gap at that position of the chain (nothing silent) and the next batch, which chains to the
refused batch's digest, is accepted.

Version 3 is version 2 plus `aggregates`: a list of the gateway's own aggregate records
(protocol.aggregate, JSON objects, signed by this batch's signature only). A gateway sends
version 3 only for a batch that carries aggregates, so a gateway that aggregates nothing sends
exactly the bytes of version 2. Each aggregate is checked on its own by the receiver
(`aggregate_problem`), like records and states.

A gateway whose spool went over its budget (bytes or age) drops its oldest batches whole and
says so with a drop, the same message with "kind":"drop", "status":0 and one more field,
"first": the batches first..seq (consecutive) were dropped unsent; prev is what batch `first`
chained to and digest is batch `seq`'s, so the chain stays verifiable across the hole.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import aggregate as aggregate_codec
from protocol import record as record_codec
from protocol import state as state_codec
from protocol.bounds import MAX_COUNTER, MAX_SEQ, MAX_TIME_MS
from protocol.compiled import checks as _native
from protocol.topics import MAX_ID_LEN, valid_device_id

VERSION = 2
VERSION_AGGREGATES = 3  # version 2 + the gateway's aggregate records
VERSIONS = (1, 2, 3)
GENESIS = "0" * 64
CONTENT_TYPE = "application/vnd.fleetloop.batch+zlib"
GAP_CONTENT_TYPE = "application/vnd.fleetloop.gap+json"
GAP_PATH = "/api/v1/ingest/gap"
MAX_GAP_BYTES = 4096
MAX_REASON_CHARS = 300
HEADER_GATEWAY = "X-Fleetloop-Gateway"
HEADER_SIGNATURE = "X-Fleetloop-Signature"
INGEST_PATH = "/api/v1/ingest"
MAX_COMPRESSED_BYTES = 8 * 1024 * 1024
MAX_CANONICAL_BYTES = 64 * 1024 * 1024
MAX_RECORDS = 20000


class BatchError(ValueError):
    """A batch that is malformed, wrongly signed or out of chain."""


@dataclass(frozen=True)
class Batch:
    gateway: str
    seq: int
    prev: str
    created_ms: int
    records: tuple[Any, ...]  # each checked on its own: see parse_record
    states: tuple[Any, ...] = ()
    version: int = VERSION
    aggregates: tuple[Any, ...] = ()  # version 3 only: protocol.aggregate objects

    def to_obj(self) -> dict[str, Any]:
        obj = {
            "v": self.version,
            "gateway": self.gateway,
            "seq": self.seq,
            "prev": self.prev,
            "created": self.created_ms,
            "records": list(self.records),
            "states": list(self.states),
        }
        if self.version >= VERSION_AGGREGATES:
            obj["aggregates"] = list(self.aggregates)
        elif self.aggregates:
            raise BatchError(f"aggregates need batch version {VERSION_AGGREGATES}")
        return obj


@dataclass(frozen=True)
class SealedBatch:
    """What goes over HTTP, plus the digest the next batch chains to."""

    gateway: str
    seq: int
    digest: str
    body: bytes  # zlib(canonical)
    signature: str  # base64

    def headers(self, token: str) -> dict[str, str]:
        return {
            "Content-Type": CONTENT_TYPE,
            HEADER_GATEWAY: self.gateway,
            HEADER_SIGNATURE: self.signature,
            "Authorization": f"Bearer {token}",
        }


def canonical(batch: Batch) -> bytes:
    return json.dumps(
        batch.to_obj(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def digest(canonical_bytes: bytes) -> str:
    return hashlib.sha256(canonical_bytes).hexdigest()


def seal(batch: Batch, key: Ed25519PrivateKey) -> SealedBatch:
    _check(batch.to_obj())
    canon = canonical(batch)
    return SealedBatch(
        gateway=batch.gateway,
        seq=batch.seq,
        digest=digest(canon),
        body=zlib.compress(canon, 6),
        signature=base64.b64encode(key.sign(canon)).decode(),
    )


def open_sealed(body: bytes, signature_b64: str, key: Ed25519PublicKey) -> tuple[Batch, str]:
    """Decompress, verify and parse; returns (batch, digest). Raises BatchError."""
    if len(body) > MAX_COMPRESSED_BYTES:
        raise BatchError("batch too large")
    try:
        inflater = zlib.decompressobj()
        canon = inflater.decompress(body, MAX_CANONICAL_BYTES)
        if inflater.unconsumed_tail:
            raise BatchError("batch too large when decompressed")
    except zlib.error as exc:
        raise BatchError("body is not zlib data") from exc
    obj = _verified_json(canon, signature_b64, key, "batch", fast=True)
    _check(obj)
    batch = Batch(
        gateway=obj["gateway"],
        seq=obj["seq"],
        prev=obj["prev"],
        created_ms=obj["created"],
        records=tuple(obj["records"]),
        states=tuple(obj["states"]),
        version=obj["v"],
        aggregates=tuple(obj.get("aggregates", ())),
    )
    return batch, digest(canon)


def _verified_json(
    signed: bytes, signature_b64: str, key: Ed25519PublicKey, what: str, fast: bool = False
) -> Any:
    """The JSON value of `signed` once its signature verifies; BatchError otherwise. `fast`:
    a version 2 batch is read by orjson (see _fast_batch), anything else by the stdlib."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError) as exc:
        raise BatchError("signature is not base64") from exc
    try:
        key.verify(signature, signed)
    except InvalidSignature as exc:
        raise BatchError("bad signature") from exc
    if fast:
        obj = _fast_batch(signed)
        if obj is not None:
            return obj
    try:
        return json.loads(signed)
    except ValueError as exc:
        raise BatchError(f"{what} is not JSON") from exc
    except RecursionError as exc:
        raise BatchError(f"{what} is nested too deeply") from exc


def _fast_batch(signed: bytes) -> dict[str, Any] | None:
    """The stdlib's reading of a version 2 batch whose records and states are all text, by
    orjson (several times faster on a batch of thousands of records); None for anything else,
    which the stdlib then reads, so every answer stays the stdlib's. For such a batch the two
    agree: orjson refuses what it reads otherwise (NaN, Infinity, 1e400, lone surrogates, a
    byte order mark), and an integer past 64 bits, which it reads as a float, can only be a
    field the batch check refuses either way, with the same words (an item that is not text
    would be quarantined with its JSON, hence the stdlib's for those)."""
    try:
        obj = _loads(signed)
    except _LoadError:
        return None
    if type(obj) is not dict or type(obj.get("v")) is not int or obj["v"] != VERSION:
        return None
    records, states = obj.get("records"), obj.get("states")
    if type(records) is not list or type(states) is not list \
            or not set(map(type, records)) <= _TEXT or not set(map(type, states)) <= _TEXT:
        return None
    return obj


_TEXT = frozenset((str,))


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeError:  # a lone surrogate from a JSON escape
        return False
    return True


def _is_hex64(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value)
    )


def _check(obj: object) -> None:
    if not isinstance(obj, dict):
        raise BatchError("batch must be an object")
    version = obj.get("v")
    if type(version) is not int or version not in VERSIONS:
        raise BatchError("batch version unsupported")
    fields = {"v", "gateway", "seq", "prev", "created", "records", "states"}
    if version >= VERSION_AGGREGATES:
        fields.add("aggregates")
    if set(obj) != fields:
        raise BatchError("batch fields are wrong")
    if not valid_device_id(obj["gateway"]):
        raise BatchError("invalid gateway id")
    if type(obj["seq"]) is not int or not 1 <= obj["seq"] <= MAX_SEQ:
        raise BatchError("batch seq must be an int in 1..2**53-1")
    if type(obj["created"]) is not int or not 0 <= obj["created"] <= MAX_TIME_MS:
        raise BatchError("created must be an int in 0..2**53-1")
    if not _is_hex64(obj["prev"]):
        raise BatchError("prev must be 64 lowercase hex chars")
    records, states = obj["records"], obj["states"]
    if not isinstance(records, list) or not isinstance(states, list):
        raise BatchError("records and states must be lists")
    aggregates = obj.get("aggregates", [])
    if not isinstance(aggregates, list):
        raise BatchError("aggregates must be a list")
    if len(records) + len(states) + len(aggregates) > MAX_RECORDS:
        raise BatchError("too many records")


# The fast path of parse_record: one compiled parser call (orjson) and one tight loop for
# version 2 metric records in the device's own form (keys v, d, i, s, t, m, h; the tag last).
# It accepts only what the full check (protocol.record.decode) accepts, returning the very same
# object, and gives up (None) on anything else, which then goes through the full check for its
# exact answer. orjson reads what the stdlib reads, to the same values, with these exceptions,
# all of which end in the full check: it refuses NaN, Infinity, numbers past the float range
# (1e400), lone surrogates and a byte order mark (the stdlib reads them; the check refuses the
# first three), and reads an integer past 64 bits as a float (the stdlib: an int, which the
# bounds refuse), so a float metric of 2**63 or more in size is left to the full check.
# Duplicate keys: both keep the last value, at the first key's place. Names and ids already
# seen valid are remembered (bounded), so each is checked once per process, not per record.
_TAG_AT_END = re.compile(rb',"h":"[0-9a-f]{32}"\}\Z')  # at len - 40
# The device's own form of a metric record, as protocol.record.encode writes it, narrowed so
# that whatever it matches the full check accepts once it is JSON (orjson refuses a float
# past the float range, which the stdlib reads as an infinity the check refuses): the keys in
# order, once each, no escapes or spaces; the device id by protocol.topics' rule; incarnation
# up to 9 digits, seq, time and integer metrics up to 15 (so within 2**31-1 and 2**53-1; a
# float's integer part likewise); at most 32 metrics of valid names; the tag last. Anything
# else (a 16-digit seq, an escape, another key order, a duplicate key) takes the checks below.
_METRIC = (rb'"[a-z0-9_]{1,%d}+":(?>-?(?:0|[1-9][0-9]{0,14}+)(?:\.[0-9]++)?+(?:[eE][+-]?[0-9]++)?+'
           rb'|true|false)') % record_codec.MAX_NAME_LEN
_DEVICE_FORM = re.compile(  # possessive (+) and atomic (?>): what follows each never matches
    # what it consumes, so nothing would be found by backtracking; they only make it faster
    rb'\{"v":2,"d":"[A-Za-z0-9][A-Za-z0-9_-]{0,%d}+","i":[1-9][0-9]{0,8}+,'
    rb'"s":[1-9][0-9]{0,14}+,"t":(?:0|[1-9][0-9]{0,14}+),'
    rb'"m":\{(?:%s(?:,%s){0,%d}+)?+\},"h":"[0-9a-f]{32}"\}'
    % (MAX_ID_LEN - 1, _METRIC, _METRIC, record_codec.MAX_METRICS - 1)
)
assert 10**15 - 1 <= min(MAX_SEQ, MAX_TIME_MS, MAX_COUNTER)
assert 10**9 - 1 <= record_codec.MAX_INCARNATION
_loads = orjson.loads
_LoadError = orjson.JSONDecodeError
_BIG_FLOAT = 2.0**63  # orjson's float for an integer literal past 64 bits is at least this
_KNOWN_LIMIT = 65536
_known_ids: set[str] = set()
_known_names: set[str] = set()


def _remember(known: set[str], value: str) -> None:
    if len(known) >= _KNOWN_LIMIT:
        known.clear()
    known.add(value)


def device_form_records(
    items: Sequence[object],
) -> tuple[list[dict[str, Any]], list[bytes]] | None:
    """(records, wire bytes) of a batch's items when every one is a record in the device's own
    form (_DEVICE_FORM), None otherwise (fast_records then answers item by item). The usual
    batch: one compiled pass (protocol/_fastpath.c) where it was built; otherwise each step is
    one pass over all items run by map() and all() in C, with no Python code per item (on the
    ingest path that code cost more than the checks themselves)."""
    if not items:
        return None
    if _native is not None:  # the form and the reading in one compiled pass
        return _native.device_records(
            items if isinstance(items, list) else list(items), MAX_ID_LEN,
            record_codec.MAX_NAME_LEN, record_codec.MAX_METRICS, record_codec.MAX_RECORD_BYTES)
    if not set(map(type, items)) <= _TEXT:
        return None
    texts = cast("Sequence[str]", items)
    try:
        wires = list(map(str.encode, texts))
    except UnicodeEncodeError:  # a lone surrogate
        return None
    if max(map(len, wires)) > record_codec.MAX_RECORD_BYTES \
            or not all(map(_DEVICE_FORM.fullmatch, wires)):
        return None
    try:
        records = list(map(_loads, texts))
    except _LoadError:  # a float past the float range: the full check refuses it
        return None
    return records, wires


def fast_records(items: Iterable[object]) -> list[tuple[dict[str, Any], bytes] | None]:
    """parse_record's answer for each item of a version 2 batch that takes the fast path, None
    for one that needs the full check (parse_record gives its exact answer). One loop for a
    whole batch: on the ingest path the calls cost as much as the checks."""
    items = items if isinstance(items, (list, tuple)) else list(items)
    whole = device_form_records(items)
    if whole is not None:
        return list(zip(*whole, strict=True))
    out: list[tuple[dict[str, Any], bytes] | None] = []
    append = out.append
    loads, load_error = _loads, _LoadError
    known_ids, known_names = _known_ids, _known_names
    tag_at_end, device_form = _TAG_AT_END.match, _DEVICE_FORM.fullmatch
    max_bytes = record_codec.MAX_RECORD_BYTES
    max_incarnation, max_metrics = record_codec.MAX_INCARNATION, record_codec.MAX_METRICS
    big, low_big, low_counter = _BIG_FLOAT, -_BIG_FLOAT, -MAX_COUNTER
    for item in items:
        if type(item) is not str:
            append(None)
            continue
        try:
            wire = item.encode()
        except UnicodeEncodeError:  # a lone surrogate
            append(None)
            continue
        n = len(wire)
        if n > max_bytes:
            append(None)
            continue
        # orjson reads the text itself (its UTF-8, which is `wire`): a little faster
        if device_form(wire) is not None:  # valid as it stands, once orjson reads it
            try:
                append((loads(item), wire))
            except load_error:  # a float past the float range: the full check refuses it
                append(None)
            continue
        # protocol.tag.split's rule on the exact bytes: `,"h":"<32 lowercase hex>"}` at the end
        # (its length rule too: a text this short is no JSON object of seven members)
        if tag_at_end(wire, n - 40) is None:
            append(None)
            continue
        try:
            obj = loads(item)
        except load_error:
            append(None)
            continue
        # seven members, each of the seven names (a KeyError otherwise): exactly those
        if type(obj) is not dict or len(obj) != 7:
            append(None)
            continue
        try:
            v = obj["v"]
            d = obj["d"]
            i = obj["i"]
            s = obj["s"]
            t = obj["t"]
            m = obj["m"]
            h = obj["h"]
        except KeyError:
            append(None)
            continue
        if v != 2 or type(v) is not int or type(h) is not str or len(h) != 32 \
                or type(d) is not str \
                or type(i) is not int or not 1 <= i <= max_incarnation \
                or type(s) is not int or not 1 <= s <= MAX_SEQ \
                or type(t) is not int or not 0 <= t <= MAX_TIME_MS \
                or type(m) is not dict or len(m) > max_metrics:
            append(None)
            continue
        if d not in known_ids:
            if not valid_device_id(d):
                append(None)
                continue
            _remember(known_ids, d)
        if not known_names.issuperset(m):
            if not all(map(record_codec.valid_metric_name, m)):
                append(None)
                continue
            for name in m:
                _remember(known_names, name)
        for value in m.values():  # every way out of the loop answers for the item
            kind = type(value)
            if kind is int:
                if not low_counter <= value <= MAX_COUNTER:
                    append(None)
                    break
            elif kind is float:
                if not low_big < value < big:  # also false for NaN and the infinities
                    append(_stdlib_record(wire))
                    break
            elif kind is not bool:
                append(None)
                break
        else:
            append((obj, wire))
    return out


def _stdlib_record(wire: bytes) -> tuple[dict[str, Any], bytes] | None:
    """A record with a float metric of 2**63 or more in size, read by the stdlib as the full
    check reads it (orjson reads an integer past 64 bits as such a float)."""
    try:
        return record_codec.decode(wire), wire
    except (ValueError, RecursionError):
        return None


def _fast_record(item: object) -> tuple[dict[str, Any], bytes] | None:
    return fast_records((item,))[0]


def parse_record(item: object, version: int = VERSION) -> tuple[dict[str, Any], bytes | None]:
    """(record, the exact bytes the device sent) of one item of a batch of `version`;
    ValueError says why it is no valid record. Version 1 items carry no wire bytes."""
    if version >= 2:
        if type(item) is str:
            fast = _fast_record(item)
            if fast is not None:
                return fast
        if not isinstance(item, str):
            raise ValueError("record must be the device's wire text")
        wire = item.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
        rec = record_codec.decode(wire)
        return rec, wire
    record_codec.check(item)
    assert isinstance(item, dict)
    if item["v"] != 1:
        raise ValueError("a version 1 batch carries version 1 records only")
    return item, None


def parse_state(item: object, version: int = VERSION) -> tuple[dict[str, Any], bytes | None]:
    """(state, the exact bytes the device sent) of one item; ValueError says what is wrong."""
    if version >= 2:
        if not isinstance(item, str):
            raise ValueError("state must be the device's wire text")
        wire = item.encode()
        return state_codec.decode(wire), wire
    state_codec.check(item)
    assert isinstance(item, dict)
    if item["v"] != 1:
        raise ValueError("a version 1 batch carries version 1 states only")
    return item, None


def record_problem(rec: object, version: int = VERSION) -> str | None:
    """Why one record of a batch cannot be stored, or None when it is a valid record."""
    try:
        parse_record(rec, version)
    except ValueError as exc:
        return str(exc)
    return None


def state_problem(st: object, version: int = VERSION) -> str | None:
    """Why one state of a batch cannot be stored, or None when it is a valid state."""
    try:
        parse_state(st, version)
    except ValueError as exc:
        return str(exc)
    return None


def aggregate_problem(item: object) -> str | None:
    """Why one aggregate of a version 3 batch cannot be stored, or None when it is valid."""
    return aggregate_codec.problem(item)


# -- gaps: a signed statement that batch <seq> was refused and is kept in a dead-letter store --

GAP_REFUSED = "gap"  # one batch the cloud refused, dead-lettered by the gateway
GAP_DROPPED = "drop"  # batches first..seq the gateway dropped unsent (its spool budget)


@dataclass(frozen=True)
class Gap:
    gateway: str
    seq: int  # the refused batch's place in the chain (a drop: the last dropped batch's)
    prev: str  # what the refused batch chained to (a drop: what batch `first` chained to)
    digest: str  # the refused (last dropped) batch's digest: the next batch chains to it
    records: int
    states: int
    status: int  # the HTTP status the cloud refused it with (0 for a drop: never sent)
    reason: str
    created_ms: int
    kind: str = GAP_REFUSED
    first: int = 0  # a drop's first dropped batch (0 for a refused batch: it is `seq`)

    @property
    def first_seq(self) -> int:
        return self.first if self.kind == GAP_DROPPED else self.seq

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "v": VERSION, "kind": self.kind, "gateway": self.gateway, "seq": self.seq,
            "prev": self.prev, "digest": self.digest, "records": self.records,
            "states": self.states, "status": self.status, "reason": self.reason,
            "created": self.created_ms,
        }
        if self.kind == GAP_DROPPED:
            obj["first"] = self.first
        return obj


_GAP_FIELDS = {"v", "kind", "gateway", "seq", "prev", "digest", "records", "states", "status",
               "reason", "created"}
_DROP_FIELDS = _GAP_FIELDS | {"first"}


def gap_canonical(gap: Gap) -> bytes:
    _check_gap(gap.to_obj())
    return json.dumps(gap.to_obj(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def seal_gap(gap: Gap, key: Ed25519PrivateKey) -> tuple[bytes, str]:
    """(body, base64 signature) of a gap."""
    body = gap_canonical(gap)
    return body, base64.b64encode(key.sign(body)).decode()


def open_gap(body: bytes, signature_b64: str, key: Ed25519PublicKey) -> Gap:
    """Verify and parse a gap; BatchError says what is wrong."""
    if len(body) > MAX_GAP_BYTES:
        raise BatchError("gap too large")
    obj = _verified_json(body, signature_b64, key, "gap")
    _check_gap(obj)
    return Gap(gateway=obj["gateway"], seq=obj["seq"], prev=obj["prev"], digest=obj["digest"],
               records=obj["records"], states=obj["states"], status=obj["status"],
               reason=obj["reason"], created_ms=obj["created"], kind=obj["kind"],
               first=obj.get("first", 0))


def _check_gap(obj: object) -> None:
    dropped = isinstance(obj, dict) and obj.get("kind") == GAP_DROPPED
    if not isinstance(obj, dict) or set(obj) != (_DROP_FIELDS if dropped else _GAP_FIELDS):
        raise BatchError("gap fields are wrong")
    if obj["v"] != VERSION or obj["kind"] not in (GAP_REFUSED, GAP_DROPPED):
        raise BatchError("gap version unsupported")
    if not valid_device_id(obj["gateway"]):
        raise BatchError("invalid gateway id")
    if type(obj["seq"]) is not int or not 1 <= obj["seq"] <= MAX_SEQ:
        raise BatchError("gap seq must be an int in 1..2**53-1")
    if not _is_hex64(obj["prev"]) or not _is_hex64(obj["digest"]):
        raise BatchError("prev and digest must be 64 lowercase hex chars")
    for name in ("records", "states"):
        if type(obj[name]) is not int or not 0 <= obj[name] <= MAX_COUNTER:
            raise BatchError(f"gap {name} must be an int >= 0")
    if dropped:
        if type(obj["first"]) is not int or not 1 <= obj["first"] <= obj["seq"]:
            raise BatchError("drop first must be an int in 1..seq")
        if type(obj["status"]) is not int or obj["status"] != 0:
            raise BatchError("drop status must be 0 (never sent)")
    elif type(obj["status"]) is not int or not 400 <= obj["status"] <= 499:
        raise BatchError("gap status must be a 4xx HTTP status")
    if (not isinstance(obj["reason"], str) or len(obj["reason"]) > MAX_REASON_CHARS
            or not _is_utf8(obj["reason"])):
        raise BatchError(f"gap reason must be UTF-8 text of at most {MAX_REASON_CHARS} chars")
    if type(obj["created"]) is not int or not 0 <= obj["created"] <= MAX_TIME_MS:
        raise BatchError("created must be an int in 0..2**53-1")
