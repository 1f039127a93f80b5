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

A drop (kind "drop") is a gateway's statement that it dropped batches first..seq unsent because
its spool went over its budget. It is recorded as one row at `seq` with gap_status 0 (never
sent) and the range in its reason; the head moves to `seq`'s digest. When the cloud already
holds the start of the range (the gateway lost our 2xx for those batches and dropped them
anyway), the drop is accepted when its prev is the digest of the batch before `first` that the
cloud holds: the same chain, so only what the cloud does not have counts as dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.errors import Conflict, InvalidRequest
from cloud.services.ingest import check_chain
from cloud.services.text import safe_text
from cloud.store import BatchRow, GatewayRow, Store
from protocol.batch import GAP_DROPPED, GENESIS, BatchError, Gap, open_gap

DROPPED_STATUS = 0  # gap_status of a drop: the batches were never sent

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
        if gap.kind == GAP_DROPPED:
            if check_drop(store, gateway.id, gap) is None:
                return GapResult(gap.seq, replay=True)
        elif check_chain(store, gateway.id, gap.seq, gap.prev, gap.digest) is None:
            return GapResult(gap.seq, replay=True)
        store.append_batch(
            BatchRow(
                gateway=gateway.id, seq=gap.seq, digest=gap.digest, prev=gap.prev,
                created_ms=gap.created_ms, received_ms=now_ms, records=gap.records, stored=0,
                states=gap.states, gap_status=gap.status, gap_reason=safe_text(gap.reason),
            )
        )
    return GapResult(gap.seq, replay=False)


def check_drop(store: Store, gateway_id: str, gap: Gap) -> GatewayRow | None:
    """The gateway's head when the drop first..seq continues its chain (see the module's
    docstring); None for a replay of the recorded drop; Conflict otherwise. In a transaction."""
    head = store.get_gateway(gateway_id)
    if head is None:
        raise Conflict(f"gateway {gateway_id} is not registered")
    if gap.seq <= head.last_seq:
        if store.batch_digest(gateway_id, gap.seq) == gap.digest:
            return None
        raise Conflict(f"drop {gap.first}..{gap.seq} differs from the chain already stored"
                       f" (the chain is at {head.last_seq})")
    if gap.first > head.last_seq + 1:
        raise Conflict(f"gap in the chain: expected batch {head.last_seq + 1}, "
                       f"got a drop from {gap.first}")
    before = GENESIS if gap.first == 1 else store.batch_digest(gateway_id, gap.first - 1)
    if gap.prev != before:
        raise Conflict(f"drop {gap.first}..{gap.seq} does not chain: prev is not the digest "
                       f"of batch {gap.first - 1}")
    return head


def describe(row: BatchRow) -> str:
    """A gap's status and reason in words (a drop has status 0: never sent)."""
    if row.gap_status == DROPPED_STATUS:
        return f"dropped by the gateway: {row.gap_reason or ''}"
    return f"{row.gap_status} {row.gap_reason or ''}"


def latest(store: Store, gateway_id: str, limit: int) -> list[BatchRow]:
    """The gateway's gaps, newest first, at most `limit` (1..MAX_PAGE)."""
    return store.gaps(gateway_id, max(1, min(limit, MAX_PAGE)))
