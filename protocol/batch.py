"""Gateway -> cloud batch: canonical bytes, zlib-compressed, Ed25519-signed, hash-chained.

CPython only. Canonical bytes are the UTF-8 JSON of
    {"created":<ms>,"gateway":"gw-1","prev":"<sha256 hex of the previous batch's canonical
     bytes, or 64 zeros for the first>","records":[<record objects>],"seq":<batch seq >= 1>,
     "states":[<state objects>],"v":1}
with keys sorted at every level, no spaces, non-ASCII kept as UTF-8.

HTTP: POST /api/v1/ingest, body = zlib(canonical), headers
    Content-Type: application/vnd.fleetloop.batch+zlib
    X-Fleetloop-Gateway: <gateway id>
    X-Fleetloop-Signature: <base64 Ed25519 signature of the canonical (uncompressed) bytes>
    Authorization: Bearer <gateway token>
The batch digest (sha256 hex of canonical bytes) is its id; the next batch carries it as `prev`.

One bad record never refuses a batch: the batch check covers only the batch's own fields and
shape; each record and state is checked on its own (`record_problem`, `state_problem`) and one
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
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import record as record_codec
from protocol import state as state_codec
from protocol.bounds import MAX_COUNTER, MAX_SEQ, MAX_TIME_MS
from protocol.topics import valid_device_id

VERSION = 1
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
    records: tuple[Any, ...]  # each checked on its own: see record_problem
    states: tuple[Any, ...] = ()

    def to_obj(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "gateway": self.gateway,
            "seq": self.seq,
            "prev": self.prev,
            "created": self.created_ms,
            "records": list(self.records),
            "states": list(self.states),
        }


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
    obj = _verified_json(canon, signature_b64, key, "batch")
    _check(obj)
    batch = Batch(
        gateway=obj["gateway"],
        seq=obj["seq"],
        prev=obj["prev"],
        created_ms=obj["created"],
        records=tuple(obj["records"]),
        states=tuple(obj["states"]),
    )
    return batch, digest(canon)


def _verified_json(signed: bytes, signature_b64: str, key: Ed25519PublicKey, what: str) -> Any:
    """The JSON value of `signed` once its signature verifies; BatchError otherwise."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError) as exc:
        raise BatchError("signature is not base64") from exc
    try:
        key.verify(signature, signed)
    except InvalidSignature as exc:
        raise BatchError("bad signature") from exc
    try:
        return json.loads(signed)
    except ValueError as exc:
        raise BatchError(f"{what} is not JSON") from exc
    except RecursionError as exc:
        raise BatchError(f"{what} is nested too deeply") from exc


def _is_hex64(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value)
    )


def _check(obj: object) -> None:
    if not isinstance(obj, dict):
        raise BatchError("batch must be an object")
    if set(obj) != {"v", "gateway", "seq", "prev", "created", "records", "states"}:
        raise BatchError("batch fields are wrong")
    if obj["v"] != VERSION:
        raise BatchError("batch version unsupported")
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
    if len(records) + len(states) > MAX_RECORDS:
        raise BatchError("too many records")


def record_problem(rec: object) -> str | None:
    """Why one record of a batch cannot be stored, or None when it is a valid record."""
    try:
        record_codec.check(rec)
    except ValueError as exc:
        return str(exc)
    return None


def state_problem(st: object) -> str | None:
    """Why one state of a batch cannot be stored, or None when it is a valid state."""
    try:
        state_codec.check(st)
    except ValueError as exc:
        return str(exc)
    return None


# -- gaps: a signed statement that batch <seq> was refused and is kept in a dead-letter store --

@dataclass(frozen=True)
class Gap:
    gateway: str
    seq: int  # the refused batch's place in the chain
    prev: str  # what the refused batch chained to (the cloud's head)
    digest: str  # the refused batch's digest: the next batch chains to it
    records: int
    states: int
    status: int  # the HTTP status the cloud refused it with
    reason: str
    created_ms: int

    def to_obj(self) -> dict[str, Any]:
        return {
            "v": VERSION, "kind": "gap", "gateway": self.gateway, "seq": self.seq,
            "prev": self.prev, "digest": self.digest, "records": self.records,
            "states": self.states, "status": self.status, "reason": self.reason,
            "created": self.created_ms,
        }


_GAP_FIELDS = {"v", "kind", "gateway", "seq", "prev", "digest", "records", "states", "status",
               "reason", "created"}


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
               reason=obj["reason"], created_ms=obj["created"])


def _check_gap(obj: object) -> None:
    if not isinstance(obj, dict) or set(obj) != _GAP_FIELDS:
        raise BatchError("gap fields are wrong")
    if obj["v"] != VERSION or obj["kind"] != "gap":
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
    if type(obj["status"]) is not int or not 400 <= obj["status"] <= 499:
        raise BatchError("gap status must be a 4xx HTTP status")
    if (not isinstance(obj["reason"], str) or len(obj["reason"]) > MAX_REASON_CHARS
            or state_problem({"v": 1, "d": obj["gateway"], "reason": obj["reason"]})):
        raise BatchError(f"gap reason must be UTF-8 text of at most {MAX_REASON_CHARS} chars")
    if type(obj["created"]) is not int or not 0 <= obj["created"] <= MAX_TIME_MS:
        raise BatchError("created must be an int in 0..2**53-1")
