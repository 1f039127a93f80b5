"""Ingest of one signed gateway batch: verify, check the chain, store in one transaction.

Outcomes (the router maps the errors to HTTP statuses):
- the next batch of the chain (seq == last + 1, prev == last digest): stored; every record
  whose (device, seq) is new becomes a telemetry row, the others count as duplicates;
- a batch already stored (seq <= last, same digest): a replay, answered like a success with
  nothing stored, so a gateway that lost our answer can safely send again;
- anything else (gap, wrong prev, a different batch under an old seq): Conflict;
- bad signature, malformed or oversized content: InvalidRequest.
Nothing is written unless the whole batch is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.errors import Conflict, InvalidRequest
from cloud.store import BatchRow, DeviceRow, GatewayRow, Store, TelemetryRow
from protocol.batch import Batch, BatchError, open_sealed

# Integers the store keeps in 64-bit columns; larger values are refused, never truncated.
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    seq: int
    replay: bool = False


def ingest(
    store: Store, gateway: GatewayRow, body: bytes, signature: str | None, now_ms: int
) -> IngestResult:
    batch, digest = verify(gateway, body, signature)
    with store.transaction():
        head = store.get_gateway(gateway.id)
        if head is None:  # deleted between authentication and now
            raise Conflict(f"gateway {gateway.id} is not registered")
        if batch.seq <= head.last_seq:
            if store.batch_digest(gateway.id, batch.seq) == digest:
                return IngestResult(0, len(batch.records), batch.seq, replay=True)
            raise Conflict(
                f"batch {batch.seq} differs from the batch {batch.seq} already stored"
                f" (the chain is at {head.last_seq})"
            )
        if batch.seq != head.last_seq + 1:
            raise Conflict(f"gap in the chain: expected batch {head.last_seq + 1}, got {batch.seq}")
        if batch.prev != head.last_digest:
            raise Conflict(
                f"batch {batch.seq} does not chain: prev is not the digest of batch {head.last_seq}"
            )
        stored = _store_contents(store, gateway.id, batch, now_ms)
        store.append_batch(
            BatchRow(
                gateway=gateway.id, seq=batch.seq, digest=digest, prev=batch.prev,
                created_ms=batch.created_ms, received_ms=now_ms, records=len(batch.records),
                stored=stored, states=len(batch.states),
            )
        )
    return IngestResult(stored, len(batch.records) - stored, batch.seq)


def verify(gateway: GatewayRow, body: bytes, signature: str | None) -> tuple[Batch, str]:
    """Open the batch with the gateway's registered key; InvalidRequest says what is wrong."""
    if not signature:
        raise InvalidRequest("missing X-Fleetloop-Signature header")
    try:
        key = Ed25519PublicKey.from_public_bytes(gateway.public_key)
        batch, digest = open_sealed(body, signature, key)
    except (BatchError, ValueError) as exc:
        raise InvalidRequest(f"batch refused: {exc}") from exc
    if batch.gateway != gateway.id:
        raise InvalidRequest(f"batch is from gateway {batch.gateway}, not {gateway.id}")
    _check_ranges(batch)
    return batch, digest


def _check_ranges(batch: Batch) -> None:
    if batch.seq > MAX_INT or batch.created_ms > MAX_INT:
        raise InvalidRequest("batch refused: seq or created out of range")
    for rec in batch.records:
        if rec["s"] > MAX_INT or rec["t"] > MAX_INT:
            raise InvalidRequest("batch refused: record seq or t out of range")
    for st in batch.states:
        if st.get("t", 0) > MAX_INT:
            raise InvalidRequest("batch refused: state t out of range")


def _store_contents(store: Store, gateway_id: str, batch: Batch, now_ms: int) -> int:
    records: dict[str, list[dict[str, Any]]] = {}
    for rec in batch.records:
        records.setdefault(rec["d"], []).append(rec)
    states: dict[str, list[dict[str, Any]]] = {}
    for st in batch.states:
        states.setdefault(st["d"], []).append(st)
    stored = 0
    for device_id in sorted(set(records) | set(states)):
        device = store.get_device(device_id)
        if device is None:
            device = DeviceRow(id=device_id, product=None, created_ms=now_ms)
            store.insert_device(device)
        recs = records.get(device_id, [])
        inserted = store.insert_telemetry(
            [
                TelemetryRow(device_id, r["s"], r["t"], r["m"], gateway_id, batch.seq)
                for r in recs
            ]
        )
        stored += inserted
        device = _with_records(device, recs, inserted)
        device = _with_states(device, states.get(device_id, []))
        store.save_device(replace(device, gateway=gateway_id))
    return stored


def _with_records(device: DeviceRow, recs: list[dict[str, Any]], inserted: int) -> DeviceRow:
    """Count new rows; merge metrics of records newer than the device's last seq, in order."""
    if not recs:
        return device
    metrics = dict(device.last_metrics)
    last_seq = device.last_seq
    for rec in sorted(recs, key=lambda r: r["s"]):
        if rec["s"] > last_seq:
            metrics.update(rec["m"])
            last_seq = rec["s"]
    return replace(
        device,
        records=device.records + inserted,
        last_seq=last_seq,
        last_metrics=metrics,
        last_seen_ms=_newest(device.last_seen_ms, (r["t"] for r in recs)),
    )


def _with_states(device: DeviceRow, states: list[dict[str, Any]]) -> DeviceRow:
    """Keep the newest state (by device time; the later one in the batch on a tie)."""
    if not states:
        return device
    reported = device.reported
    for st in states:
        if reported is None or st.get("t", 0) >= reported.get("t", 0):
            reported = st
    product = device.product
    if product is None and reported is not None and reported.get("profile"):
        product = reported["profile"]
    return replace(
        device,
        reported=reported,
        product=product,
        last_seen_ms=_newest(device.last_seen_ms, (s["t"] for s in states if "t" in s)),
    )


def _newest(current: int | None, times: Iterable[int]) -> int | None:
    for t in times:
        if current is None or t > current:
            current = t
    return current
