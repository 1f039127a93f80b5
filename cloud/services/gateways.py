"""Gateway registration and bearer tokens.

A gateway is registered by an admin with its raw Ed25519 batch-signing public key. Each
registration returns a fresh random token, shown once; only its sha256 is stored, and a new
registration replaces (revokes) the previous token. The key of an id never changes: a
different key for an existing id is a conflict (retire the id instead of re-keying it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cloud.errors import Conflict, NotFound
from cloud.store import BatchRow, GatewayRow, Store
from protocol.batch import GENESIS

TOKEN_BYTES = 32
LATEST_GAPS = 5


@dataclass(frozen=True)
class GatewayStatus:
    """A gateway's chain as an operator sees it: its head and the gaps in it."""

    gateway: GatewayRow
    gaps: int
    latest_gaps: list[BatchRow]


@dataclass(frozen=True)
class Registration:
    gateway: GatewayRow
    token: str
    created: bool  # False when an existing gateway got a new token


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def register(store: Store, gateway_id: str, public_key: bytes, now_ms: int) -> Registration:
    """Create the gateway, or rotate its token when the same key registers again."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with store.transaction():
        existing = store.get_gateway(gateway_id)
        if existing is None:
            row = GatewayRow(
                id=gateway_id, public_key=public_key, created_ms=now_ms, last_seq=0,
                last_digest=GENESIS,
            )
            store.insert_gateway(row, hash_token(token))
            return Registration(row, token, created=True)
        if not hmac.compare_digest(existing.public_key, public_key):
            raise Conflict(f"gateway {gateway_id} is registered with a different public key")
        store.set_gateway_token(gateway_id, hash_token(token))
        return Registration(existing, token, created=False)


def authenticate(store: Store, token: str) -> GatewayRow | None:
    """The gateway a bearer token belongs to, or None."""
    if not token:
        return None
    return store.gateway_by_token_hash(hash_token(token))


def get_gateway(store: Store, gateway_id: str) -> GatewayRow:
    gateway = store.get_gateway(gateway_id)
    if gateway is None:
        raise NotFound(f"gateway {gateway_id} not found")
    return gateway


def statuses(store: Store, latest: int = LATEST_GAPS) -> list[GatewayStatus]:
    """Every gateway with its gap count and its newest `latest` gaps."""
    counts = store.gap_counts()
    return [
        GatewayStatus(g, counts.get(g.id, 0), store.gaps(g.id, latest) if g.id in counts else [])
        for g in store.list_gateways()
    ]
