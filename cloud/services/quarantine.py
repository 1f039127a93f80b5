"""Per-record quarantine: a record or state that cannot be stored is kept aside with its reason.

The rule is that one bad record never blocks anyone else's: a batch the chain accepts is
stored item by item, and an item that fails is put here (its device id when valid, its seq
when it is an int, the gateway and batch it came in, why, and its JSON cut to
MAX_BODY_CHARS) instead of refusing the batch. Reasons:
- protocol.batch.record_problem / state_problem: the item breaks the wire contract (a field
  out of protocol.bounds, an unknown field, a bad device id, ...);
- its device is assigned to another gateway (cloud.services.assignment).
Quarantined items are counted in the ingest answer, per device and per batch, and listed by
the API; nothing in quarantine is ever stored as telemetry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud.services.text import cut, safe_text
from cloud.store import QuarantineRow, Store
from protocol.batch import MAX_REASON_CHARS, Batch, record_problem, state_problem
from protocol.topics import valid_device_id

RECORD = "record"
STATE = "state"
MAX_BODY_CHARS = 4096
MAX_PAGE = 1000


@dataclass(frozen=True)
class Sorted:
    """A batch's items: the valid ones by device, the invalid ones already held."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    states: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    held: list[QuarantineRow] = field(default_factory=list)


def body_text(item: object) -> str:
    """The item's JSON (ASCII, so any string in it can be stored), cut to MAX_BODY_CHARS
    (marked with a trailing '...')."""
    try:
        text = json.dumps(item, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        text = "<not printable as JSON>"
    return cut(text, MAX_BODY_CHARS)


def problem(kind: str, item: object) -> str | None:
    """Why the item cannot be stored (protocol.batch's check: the same as every hop's), or
    None. It refuses text no database can hold, such as a lone surrogate in a state."""
    return record_problem(item) if kind == RECORD else state_problem(item)


def hold(
    item: object, kind: str, reason: str, gateway_id: str, batch_seq: int, now_ms: int
) -> QuarantineRow:
    device = item.get("d") if isinstance(item, dict) else None
    seq = item.get("s") if isinstance(item, dict) and kind == RECORD else None
    return QuarantineRow(
        gateway=gateway_id,
        batch_seq=batch_seq,
        kind=kind,
        reason=cut(safe_text(reason), MAX_REASON_CHARS),
        body=body_text(item),
        received_ms=now_ms,
        device=device if valid_device_id(device) else None,
        seq=seq if type(seq) is int else None,
    )


def hold_all(
    records: Iterable[object], states: Iterable[object], reason: str, gateway_id: str,
    batch_seq: int, now_ms: int,
) -> list[QuarantineRow]:
    return [hold(r, RECORD, reason, gateway_id, batch_seq, now_ms) for r in records] + [
        hold(s, STATE, reason, gateway_id, batch_seq, now_ms) for s in states
    ]


def sort(batch: Batch, gateway_id: str, now_ms: int) -> Sorted:
    """Check every record and state of the batch on its own."""
    out = Sorted()
    for kind, items, by_device in (
        (RECORD, batch.records, out.records),
        (STATE, batch.states, out.states),
    ):
        for item in items:
            reason = problem(kind, item)
            if reason is None:
                by_device.setdefault(item["d"], []).append(item)
            else:
                out.held.append(hold(item, kind, reason, gateway_id, batch.seq, now_ms))
    return out


def page(store: Store, device_id: str | None, limit: int) -> list[QuarantineRow]:
    """Newest first, at most `limit` (1..MAX_PAGE): one device's, or the fleet's (None)."""
    return store.quarantine(device_id, max(1, min(limit, MAX_PAGE)))
