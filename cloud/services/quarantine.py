"""Per-record quarantine: a record or state that cannot be stored is kept aside with its reason.

The rule is that one bad record never blocks anyone else's: a batch the chain accepts is
stored item by item, and an item that fails is put here (its device id when valid, its seq
when it is an int, the gateway and batch it came in, why, and its text cut to
MAX_BODY_CHARS: the device's exact wire text for a version 2 batch, the item's JSON for a
version 1 batch) instead of refusing the batch. Reasons:
- protocol.batch.parse_record / parse_state: the item breaks the wire contract (a field
  out of protocol.bounds, an unknown field, a bad device id, a malformed tag, ...);
- it is not the device's own (cloud.services.tags): no record key registered for a tagged
  item, a bad tag, or an untagged (version 1) item from a device that has a record key;
- "conflict": its identity (device, incarnation, seq) was stored before with other content
  (cloud.services.identity); counted per device as well;
- its device is assigned to another gateway (cloud.services.assignment).
Quarantined items are counted in the ingest answer, per device and per batch, and listed by
the API; nothing in quarantine is ever stored as telemetry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby, repeat
from operator import itemgetter
from typing import Any, NamedTuple

from cloud.services.text import cut, safe_text
from cloud.store import QuarantineRow, Store
from protocol.batch import (
    MAX_REASON_CHARS,
    Batch,
    device_form_records,
    fast_records,
    parse_record,
    parse_state,
)
from protocol.topics import valid_device_id

RECORD = "record"
STATE = "state"
MAX_BODY_CHARS = 4096
MAX_PAGE = 1000


class Item(NamedTuple):
    """One valid record or state of a batch: its parsed object, the exact bytes the device
    sent (None in a version 1 batch) and the item as the batch carried it. (A named tuple:
    one is made per record on the ingest path, and a frozen dataclass costs several times
    more to build.)"""

    kind: str
    obj: dict[str, Any]
    wire: bytes | None
    raw: object


@dataclass(frozen=True)
class Sorted:
    """A batch's items: the valid ones by device, the invalid ones already held."""

    records: dict[str, list[Item]] = field(default_factory=dict)
    states: dict[str, list[Item]] = field(default_factory=dict)
    held: list[QuarantineRow] = field(default_factory=list)


def body_text(item: object, wire: bool = False) -> str:
    """The item's text, cut to MAX_BODY_CHARS (marked with a trailing '...'): an item of a
    version 2 batch (`wire`) as the device's text as it came (escaped where it is no UTF-8,
    and a NUL as `\\x00`),
    anything else as ASCII JSON (so any string in it can be stored)."""
    if wire and isinstance(item, str):
        # NUL as its escape: PostgreSQL's text cannot hold it (a 500 for the whole batch)
        return cut(safe_text(item), MAX_BODY_CHARS)
    try:
        text = json.dumps(item, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        text = "<not printable as JSON>"
    return cut(text, MAX_BODY_CHARS)


def parse(kind: str, item: object, version: int) -> tuple[dict[str, Any], bytes | None]:
    """(object, wire bytes) of a valid item of a batch of `version`; ValueError says why it is
    not valid (protocol.batch's check: the same as every hop's). It refuses text no database
    can hold, such as a lone surrogate in a state."""
    if kind == RECORD:
        return parse_record(item, version)
    return parse_state(item, version)


def _as_object(item: object, wire: bool) -> object:
    """The JSON object inside a wire text, to attribute an invalid one to its device."""
    if not wire or not isinstance(item, str):
        return item
    try:
        return json.loads(item)
    except (ValueError, RecursionError):
        return None


def hold(
    item: object, kind: str, reason: str, gateway_id: str, batch_seq: int, now_ms: int,
    wire: bool = False,
) -> QuarantineRow:
    """The quarantine row of an item; `wire`: it came in a version 2 batch (device text)."""
    obj = _as_object(item, wire)
    device = obj.get("d") if isinstance(obj, dict) else None
    seq = obj.get("s") if isinstance(obj, dict) and kind == RECORD else None
    return QuarantineRow(
        gateway=gateway_id,
        batch_seq=batch_seq,
        kind=kind,
        reason=cut(safe_text(reason), MAX_REASON_CHARS),
        body=body_text(item, wire),
        received_ms=now_ms,
        device=device if valid_device_id(device) else None,
        seq=seq if type(seq) is int else None,
    )


def sort(batch: Batch, gateway_id: str, now_ms: int) -> Sorted:
    """Check every record and state of the batch on its own, as items of its version."""
    out = Sorted()
    version = batch.version
    new_item = tuple.__new__  # Item(...) without its Python-level __new__: one per record
    for kind, items, by_device in (
        (RECORD, batch.records, out.records),
        (STATE, batch.states, out.states),
    ):
        if kind == RECORD and version >= 2:
            whole = device_form_records(items)
            if whole is not None:  # the usual batch: every record valid as it stands
                _group(by_device, *whole, items)
                continue
        parser = parse_record if kind == RECORD else parse_state
        # the records of a version 2 batch: protocol.batch's fast path for the whole batch in
        # one loop, the full check (its exact answer) for those it leaves
        fast: Iterable[tuple[dict[str, Any], bytes | None] | None] = (
            fast_records(items) if kind == RECORD and version >= 2 else repeat(None)
        )
        group: list[Item] | None = None
        device = None
        parsed: tuple[dict[str, Any], bytes | None] | None
        for item, parsed in zip(items, fast, strict=False):  # repeat() never ends
            if parsed is None:
                try:
                    parsed = parser(item, version)
                except ValueError as exc:
                    out.held.append(hold(item, kind, str(exc), gateway_id, batch.seq, now_ms,
                                         wire=version >= 2))
                    continue
            obj, wire = parsed
            d = obj["d"]
            if d != device or group is None:  # a batch holds runs of one device's items
                device = d
                group = by_device.get(d)
                if group is None:
                    group = by_device[d] = []
            group.append(new_item(Item, (kind, obj, wire, item)))
    return out


_device_of = itemgetter("d")
_first, _second = itemgetter(0), itemgetter(1)
_record_item = partial(tuple.__new__, Item)  # Item(...) from one tuple, in C


def _group(
    by_device: dict[str, list[Item]], objs: list[dict[str, Any]], wires: list[bytes],
    items: Sequence[object],
) -> None:
    """Add the valid records (objs, wires, items alike) to their devices' lists, in batch
    order, with no Python code per record: a batch holds runs of one device's records."""
    made = map(_record_item, zip(repeat(RECORD), objs, wires, items, strict=False))
    for device, run in groupby(zip(map(_device_of, objs), made, strict=True), key=_first):
        group = by_device.get(device)
        if group is None:
            group = by_device[device] = []
        group.extend(map(_second, run))


def page(store: Store, device_id: str | None, limit: int) -> list[QuarantineRow]:
    """Newest first, at most `limit` (1..MAX_PAGE): one device's, or the fleet's (None)."""
    return store.quarantine(device_id, max(1, min(limit, MAX_PAGE)))
