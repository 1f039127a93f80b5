"""Record identity: (device, incarnation, seq), incarnation 0 for version 1 records.

Every hop is idempotent by identity, so the same identity arriving again is normal (a gateway
resending after a lost answer): with the same content it is a plain duplicate. With other
content it is a conflict: two different records claim one place in the device's history. The
stored one stays; the newcomer is quarantined with a reason that says so, never dropped in
silence, and counted on the device (`conflicts`). The content compared is the time and the
metrics (as canonical JSON: 1 and 1.0 and true differ), or a consent record's `c`, which for a
tagged record is exactly what its tag covers besides the identity. For a device under consent
(cloud.services.consent) a stored record may have lost metrics its tier does not allow, so the
same record sent again is a duplicate when the stored metrics are a part of it, each with the
same value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter, sub
from typing import Any

from cloud.services.quarantine import Item
from cloud.store import Store, TelemetryRow

_object_of, _seq_of = itemgetter(1), itemgetter("s")  # of an Item, of a record: map() in C
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


@dataclass(frozen=True)
class _Content:
    t: int
    m: dict[str, Any]
    consent: dict[str, Any] | None

    @staticmethod
    def of(obj: dict[str, Any]) -> _Content:
        return _Content(obj["t"], obj.get("m", {}), obj.get("c"))

    @staticmethod
    def of_row(row: TelemetryRow) -> _Content:
        return _Content(row.t, row.m, row.consent)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _same_metrics(stored: dict[str, Any], new: dict[str, Any], screened: bool) -> bool:
    """Equal as canonical JSON; for a `screened` device (under consent), the stored metrics
    may lack names that consent removed, so they need only be a part of the new ones."""
    if not screened:
        return _canon(stored) == _canon(new)
    return all(name in new and _canon(stored[name]) == _canon(new[name]) for name in stored)


def _difference(stored: _Content, new: _Content, screened: bool) -> str | None:
    """What differs ("time", "metrics", "time and metrics", "consent"), None: a duplicate."""
    if stored.consent is not None or new.consent is not None:
        if stored.consent is None or new.consent is None \
                or _canon(stored.consent) != _canon(new.consent):
            return "consent" if stored.t == new.t else "time and consent"
        return None if stored.t == new.t else "time"
    same_m = _same_metrics(stored.m, new.m, screened)
    if stored.t == new.t:
        return None if same_m else "metrics"
    return "time" if same_m else "time and metrics"


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """(low, high) ranges covering the sorted seqs, split where they lie far apart."""
    if not seqs:
        return []
    if seqs[-1] - seqs[0] <= _RUN_GAP or max(map(sub, seqs[1:], seqs[:-1])) <= _RUN_GAP:
        return [(seqs[0], seqs[-1])]  # the common case, one run: found without a loop
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


def judge(
    store: Store, device_id: str, records: Sequence[Item], screened: bool = False
) -> Judged:
    """New, duplicate or conflicting, each record against what is stored and the records
    before it in the batch. `screened`: the device is under consent (cloud.services.consent),
    so a stored record may hold fewer metrics than it was sent with."""
    out = Judged()
    incarnations = list(map(dict.get, map(_object_of, records), repeat("i"), repeat(0)))
    by_incarnation: dict[int, list[Item]] = {}
    if len(set(incarnations)) == 1:  # the common case: one incarnation, no grouping needed
        by_incarnation[incarnations[0]] = records if isinstance(records, list) else [*records]
    else:
        for incarnation, item in zip(incarnations, records, strict=True):
            by_incarnation.setdefault(incarnation, []).append(item)
    for incarnation, items in by_incarnation.items():
        seqs = list(map(_seq_of, map(_object_of, items)))
        unique = set(seqs)
        stored_rows = _stored(store, device_id, incarnation, unique)
        if not stored_rows and len(unique) == len(seqs):
            out.new.extend(items)  # new records, each seq once: nothing to compare
            continue
        stored = {seq: _Content.of_row(row) for seq, row in stored_rows.items()}
        first: dict[int, Item] = {}  # seq -> the first new record of the batch with it
        for item, seq in zip(items, seqs, strict=True):
            known = stored.get(seq)
            if known is None:
                earlier = first.get(seq)
                if earlier is None:
                    first[seq] = item
                    out.new.append(item)
                    continue
                known = _Content.of(earlier.obj)
            what = _difference(known, _Content.of(item.obj), screened)
            if what is None:
                out.duplicates += 1
            else:
                out.conflicts.append((item, CONFLICT.format(
                    device=device_id, incarnation=incarnation, seq=seq, what=what,
                )))
    return out
