"""Gaps: a gateway's signed statement that the batch at one place of its chain was refused.

A batch the cloud refuses for a batch-level reason (400: it does not verify or parse) can never
be accepted, and the chain would stop at it for good. The gateway keeps it in a dead-letter
store and sends a protocol.batch.Gap instead, signed with the same key: "batch <seq>, digest
<digest>, chaining to <prev>, holding N records, was refused with <status>: <reason>". The
cloud records the gap at that place of the chain (a batches row with gap_status/gap_reason,
stored 0) and moves the head to the refused batch's digest, so the next batch chains
normally. Nothing is silent: gaps are listed per gateway, counted, and shown on the dashboard.

Same chain rules as a batch: the next link is recorded; the same gap again is a replay (200,
nothing new); anything else is a Conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.errors import InvalidRequest
from cloud.services.ingest import check_chain
from cloud.services.text import safe_text
from cloud.store import BatchRow, GatewayRow, Store
from protocol.batch import BatchError, Gap, open_gap

MAX_PAGE = 1000


@dataclass(frozen=True)
class GapResult:
    seq: int
    replay: bool


def verify(gateway: GatewayRow, body: bytes, signature: str | None) -> Gap:
    """Open the gap with the gateway's registered key; InvalidRequest says what is wrong."""
    if not signature:
        raise InvalidRequest("missing X-Fleetloop-Signature header")
    try:
        key = Ed25519PublicKey.from_public_bytes(gateway.public_key)
        gap = open_gap(body, signature, key)
    except (BatchError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"gap refused: {exc}") from exc
    if gap.gateway != gateway.id:
        raise InvalidRequest(f"gap is from gateway {gap.gateway}, not {gateway.id}")
    return gap


def record_gap(
    store: Store, gateway: GatewayRow, body: bytes, signature: str | None, now_ms: int
) -> GapResult:
    gap = verify(gateway, body, signature)
    with store.transaction():
        if check_chain(store, gateway.id, gap.seq, gap.prev, gap.digest) is None:
            return GapResult(gap.seq, replay=True)
        store.append_batch(
            BatchRow(
                gateway=gateway.id, seq=gap.seq, digest=gap.digest, prev=gap.prev,
                created_ms=gap.created_ms, received_ms=now_ms, records=gap.records, stored=0,
                states=gap.states, gap_status=gap.status, gap_reason=safe_text(gap.reason),
            )
        )
    return GapResult(gap.seq, replay=False)


def latest(store: Store, gateway_id: str, limit: int) -> list[BatchRow]:
    """The gateway's gaps, newest first, at most `limit` (1..MAX_PAGE)."""
    return store.gaps(gateway_id, max(1, min(limit, MAX_PAGE)))
