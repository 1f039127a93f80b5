"""Helpers for the cloud tests: keys, records, states and a gateway that keeps its chain."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient

from protocol import record as record_codec
from protocol import state as state_codec
from protocol.batch import GENESIS, Batch, SealedBatch, seal
from protocol.tag import Hmac

ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T0 = 1_732_345_678_000


class Clock:
    """A settable clock for create_app(clock=...)."""

    def __init__(self, now_s: float = T0 / 1000) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64_public(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(raw_public(key)).decode()


def pem_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


INCARNATION = 1234567


def record_key(n: int = 1) -> bytes:
    """A device's 32-byte record key (test keys: n picks one)."""
    return hashlib.sha256(b"record key %d" % n).digest()


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def rec(device: str, seq: int, t: int | None = None, **metrics: Any) -> dict[str, Any]:
    """A version 1 record (older firmware, untagged) exactly as protocol.record encodes it:
    what a version 1 batch carries."""
    metrics = metrics or {"power": 100 + seq}
    obj: dict[str, Any] = json.loads(
        record_codec.encode_v1(device, seq, T0 + seq if t is None else t, metrics)
    )
    return obj


def signed(
    device: str, seq: int, key: bytes, *, incarnation: int = INCARNATION, t: int | None = None,
    **metrics: Any,
) -> str:
    """A version 2 record's wire text, tagged under `key`: what a version 2 batch carries."""
    metrics = metrics or {"power": 100 + seq}
    wire = record_codec.encode(
        device, incarnation, seq, T0 + seq if t is None else t, metrics, Hmac(key)
    )
    return wire.decode()


def consent(
    device: str, seq: int, key: bytes, tier: str, *, origin: str = "device", cfg: int = 0,
    incarnation: int = INCARNATION, t: int | None = None,
) -> str:
    """A consent record's wire text (protocol.record), tagged under `key`."""
    wire = record_codec.encode_consent(device, incarnation, seq, T0 + seq if t is None else t,
                                       tier, origin, cfg, Hmac(key))
    return wire.decode()


def state(device: str, **fields: Any) -> dict[str, Any]:
    obj = {"v": 1, "d": device, "t": T0, **fields}
    state_codec.check(obj)
    return obj


def signed_state(
    device: str, key: bytes, *, incarnation: int = INCARNATION, **fields: Any
) -> str:
    """A version 2 state's wire text, tagged under `key`."""
    obj = {"v": 2, "d": device, "i": incarnation, "t": T0, **fields}
    return state_codec.encode(obj, Hmac(key)).decode()


def counts(app: FastAPI) -> dict[str, int]:
    with app.state.db.connection() as store:
        return store.counts()


def register(client: TestClient | httpx.Client, gateway_id: str, key: Ed25519PrivateKey) -> str:
    r = client.post(
        "/api/v1/gateways", json={"id": gateway_id, "public_key": b64_public(key)}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


@dataclass
class GatewaySim:
    """A registered gateway as the real one behaves: seals batches in chain order."""

    client: TestClient
    id: str
    key: Ed25519PrivateKey
    token: str
    seq: int = 0
    prev: str = GENESIS
    sent: list[SealedBatch] = field(default_factory=list)

    def seal(
        self,
        records: Sequence[Any] = (),
        states: Sequence[Any] = (),
        *,
        seq: int | None = None,
        prev: str | None = None,
        gateway: str | None = None,
        key: Ed25519PrivateKey | None = None,
        version: int | None = None,
    ) -> SealedBatch:
        """The next batch; version 2 (wire texts) when any item is a string, else 1 (objects)."""
        if version is None:
            version = 2 if any(isinstance(x, str) for x in (*records, *states)) else 1
        batch = Batch(
            gateway=gateway or self.id,
            seq=self.seq + 1 if seq is None else seq,
            prev=self.prev if prev is None else prev,
            created_ms=T0,
            records=tuple(records),
            states=tuple(states),
            version=version,
        )
        return seal(batch, key or self.key)

    def seal_raw(self, obj: Any) -> SealedBatch:
        """Sign any JSON value as a batch body, bypassing protocol.batch's own checks (ASCII
        JSON, so strings that are no Unicode text, like lone surrogates, can be sent too)."""
        return self.seal_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())

    def seal_bytes(self, canon: bytes) -> SealedBatch:
        """Sign any bytes as a batch body."""
        return SealedBatch(
            gateway=self.id, seq=0, digest=hashlib.sha256(canon).hexdigest(),
            body=zlib.compress(canon), signature=base64.b64encode(self.key.sign(canon)).decode(),
        )

    def batch_obj(
        self, records: Sequence[Any] = (), states: Sequence[Any] = (), **fields: Any
    ) -> dict[str, Any]:
        """The next batch of the chain as a plain object (records and states unchecked);
        version 1 unless `v` says otherwise."""
        return {"v": 1, "gateway": self.id, "seq": self.seq + 1, "prev": self.prev,
                "created": T0, "records": list(records), "states": list(states), **fields}

    def push_raw(
        self, records: Sequence[Any] = (), states: Sequence[Any] = (), v: int = 1
    ) -> httpx.Response:
        """Like push, with records and states that protocol.batch.seal would refuse."""
        obj = self.batch_obj(records, states, v=v)
        sealed = self.seal_raw(obj)
        r = self.post(sealed)
        if r.status_code == 200:
            self.seq, self.prev = obj["seq"], sealed.digest
            self.sent.append(sealed)
        return r

    def post(self, sealed: SealedBatch, **header_overrides: str) -> httpx.Response:
        headers = sealed.headers(self.token)
        headers.update(header_overrides)
        return self.client.post("/api/v1/ingest", content=sealed.body, headers=headers)

    def push(self, records: Sequence[Any] = (), states: Sequence[Any] = ()) -> httpx.Response:
        """Seal the next batch of the chain and send it; advance the chain on 200."""
        sealed = self.seal(records, states)
        r = self.post(sealed)
        if r.status_code == 200:
            self.seq, self.prev = sealed.seq, sealed.digest
            self.sent.append(sealed)
        return r


def enrol(
    client: TestClient | httpx.Client, device: str, key: bytes, product: str = "bike"
) -> dict[str, Any]:
    """Register the device with its record key, as the factory's enrolment does."""
    r = client.post("/api/v1/devices", json={"id": device, "product": product,
                                             "record_key": b64(key)}, headers=ADMIN)
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def api_token(app: FastAPI, role: str, name: str | None = None, *, customer: str | None = None,
              expires_days: int = 90, now_ms: int = T0) -> str:
    """A database API token of `role` (cloud.services.tokens), made as the offline CLI does."""
    from cloud.services import audit, tokens
    from cloud.store import CustomerRow

    if role == "customer" and customer is None:
        customer = "acme"
    with app.state.db.connection() as store:
        if customer is not None and store.get_customer(customer) is None:
            with store.transaction():
                store.insert_customer(CustomerRow(id=customer, name=customer, created_ms=now_ms))
        issued = tokens.create(store, audit.Offline(), name or f"{role}-token", role, now_ms,
                               customer=customer, expires_days=expires_days)
    return issued.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored_bytes(app: FastAPI) -> bytes:
    """Everything the app's database holds, as bytes to search for a secret in: the SQLite
    file, or every row of every table of the PostgreSQL database."""
    db = app.state.db
    path = getattr(db, "path", None)
    if path is not None:
        return bytes(path.read_bytes())
    out = []
    with db.connection() as store:
        conn = store._conn
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                out.append(repr(row).encode())
    return b"\n".join(out)
