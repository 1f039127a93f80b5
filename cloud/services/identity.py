"""Record identity: (device, incarnation, seq), incarnation 0 for version 1 records.

Every hop is idempotent by identity, so the same identity arriving again is normal (a gateway
resending after a lost answer): with the same content it is a plain duplicate. With other
content it is a conflict: two different records claim one place in the device's history. The
stored one stays; the newcomer is quarantined with a reason that says so, never dropped in
silence, and counted on the device (`conflicts`). The content compared is the time and the
metrics (as canonical JSON: 1 and 1.0 and true differ), which for a tagged record is exactly
what its tag covers besides the identity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.services.quarantine import Item
from cloud.store import Store, TelemetryRow
from protocol.record import incarnation as incarnation_of

# Seqs of one incarnation closer than this are looked up in one range query.
_RUN_GAP = 1024

CONFLICT = (
    "conflict: device {device} incarnation {incarnation} seq {seq} was stored before with"
    " other {what}; the stored record is kept, this one is not stored"
)


@dataclass
class Judged:
    """A device's valid records of one batch, sorted by identity."""

    new: list[Item] = field(default_factory=list)
    duplicates: int = 0
    conflicts: list[tuple[Item, str]] = field(default_factory=list)  # with its reason


def _content(t: int, m: dict[str, Any]) -> tuple[int, str]:
    return t, json.dumps(m, sort_keys=True, separators=(",", ":"))


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """(low, high) ranges covering the sorted seqs, split where they lie far apart."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and seq - runs[-1][1] <= _RUN_GAP:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _stored(
    store: Store, device_id: str, incarnation: int, seqs: set[int]
) -> dict[int, TelemetryRow]:
    out: dict[int, TelemetryRow] = {}
    for low, high in _runs(sorted(seqs)):
        for row in store.telemetry_between(device_id, incarnation, low, high):
            out[row.seq] = row
    return out


def judge(store: Store, device_id: str, records: Sequence[Item]) -> Judged:
    """New, duplicate or conflicting, each record against what is stored and the records
    before it in the batch."""
    out = Judged()
    by_incarnation: dict[int, list[Item]] = {}
    for item in records:
        by_incarnation.setdefault(incarnation_of(item.obj), []).append(item)
    for incarnation, items in by_incarnation.items():
        seen = {
            seq: _content(row.t, row.m)
            for seq, row in _stored(store, device_id, incarnation, {i.obj["s"] for i in items})
            .items()
        }
        for item in items:
            seq = item.obj["s"]
            content = _content(item.obj["t"], item.obj["m"])
            known = seen.get(seq)
            if known is None:
                seen[seq] = content
                out.new.append(item)
            elif known == content:
                out.duplicates += 1
            else:
                what = "time" if known[1] == content[1] else "metrics"
                if known[0] != content[0] and known[1] != content[1]:
                    what = "time and metrics"
                out.conflicts.append((item, CONFLICT.format(
                    device=device_id, incarnation=incarnation, seq=seq, what=what,
                )))
    return out
