"""A rollout device's word (protocol.ota.STATUSES), from what the device says and what the
cloud sees. Pure functions over cloud.rollout_store.RolloutDeviceRow; no store, no clock.

What the device says (`heard`): its verified states, in the order it sent them. A state whose
`update_id` is the rollout's offer id gives the device's own word (downloading ... committed,
rolled_back, failure), its progress and, for rolled_back and failure, its reason. States about
another offer are ignored. A final word (success, rolled_back, failure) never changes, and
after `committed` only a final word does (a late copy of an earlier state cannot undo it). Every state also says the
firmware the device runs, and after `committed` every state is evidence for its soak: its
resets count (a reset after commit is a crash or a watchdog), its firmware and its lowest free
heap.

What the cloud decides (`judged`, at a time):
- failure by deadline: a device that started (downloading ... rebooting) and then sent no
  state at all for deadline_s: "silent for N s after it started downloading". A device that
  never started stays pending or offered (it is off), never failed;
- after `committed` at T: failure at once when it resets for a fault, or for a cause it did not
  name ("reset after commit (crash)"), or its
  lowest free heap, in the states it sends once its update is done (no update word), falls
  below heap_ratio x its baseline (its last heap_low before the offer): "heap_low 20100 < 80%
  of 30000"; at T + soak_s success, unless no state on the new
  version came in the second half of the soak or its records are stuck (none stored since T
  while its buffer holds some). A
  failed soak is a failure: the device cannot go back, its anti-rollback floor forbids it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from cloud.rollout_store import RolloutDeviceRow
from protocol import ota
from protocol import state as state_codec

WAITING = (ota.PENDING, ota.OFFERED)
STARTED = (ota.DOWNLOADING, ota.VERIFIED, ota.INSTALLING, ota.REBOOTING)  # the deadline runs


@dataclass(frozen=True)
class Target:
    """What a device's words are judged against: the rollout's offer and its limits."""

    offer_id: str
    version: str
    soak_ms: int
    deadline_ms: int
    heap_ratio: float


def heard(row: RolloutDeviceRow, target: Target, states: Iterable[dict[str, Any]],
          now_ms: int) -> RolloutDeviceRow:
    """The row after the device's verified states arrived at now_ms, in the order it sent
    them (a batch keeps it). Not by their device time: a board without a clock may start
    its time again at a reset, and an update resets."""
    for st in states:
        row = _one(row, target, st, now_ms)
    return row


def _one(row: RolloutDeviceRow, target: Target, st: dict[str, Any],
         now_ms: int) -> RolloutDeviceRow:
    t = st.get("t", 0)
    fw = st.get("fw")
    row = replace(row, heard_ms=now_ms, version=fw if isinstance(fw, str) else row.version)
    word = st.get("update")
    if (word in ota.DEVICE_STATUSES and st.get("update_id") == target.offer_id
            and row.word not in ota.FINAL
            and (row.word != ota.COMMITTED or word in ota.FINAL)):  # committed stays
        if word != row.word:
            row = replace(row, word=word, since_ms=now_ms)
            if word == ota.COMMITTED:
                resets = st.get("resets")
                row = replace(row, committed_ms=now_ms, committed_t=t,
                              commit_resets=resets if isinstance(resets, int) else None)
        reason = st.get("update_reason", "") if word in (ota.ROLLED_BACK, ota.FAILURE) else ""
        progress = st.get("update_progress", row.progress)
        row = replace(row, word_t=t, reason=str(reason), progress=progress)
    if row.word == ota.COMMITTED:  # this state or one sent after the commit
        row = _soak_evidence(row, target, st, now_ms)
    return row


def _soak_evidence(row: RolloutDeviceRow, target: Target, st: dict[str, Any],
                   now_ms: int) -> RolloutDeviceRow:
    resets = st.get("resets")
    cause = st.get("reset_cause")
    if (row.reset_cause is None and isinstance(resets, int) and row.commit_resets is not None
            and resets > row.commit_resets
            and (cause in state_codec.FAULT_RESETS or cause not in state_codec.RESET_CAUSES)):
        row = replace(row, reset_cause=str(cause or "unknown cause"))
    if st.get("fw") == target.version:
        row = replace(row, beat_ms=now_ms)
        low = st.get("heap_low")
        # Only once the device has finished its update (its states then carry no update word
        # and it measures its lowest heap afresh): the update's own work is not the new
        # version's appetite.
        if isinstance(low, int) and "update" not in st:
            row = replace(row, heap_min=low if row.heap_min is None else min(row.heap_min, low))
    return row


def judged(row: RolloutDeviceRow, target: Target, now_ms: int,
           records_since: Callable[[str, int], bool]) -> RolloutDeviceRow:
    """The row with the cloud's verdict at now_ms (unchanged when there is none yet).
    records_since(device, t): whether a record of it later than device time t is stored."""
    if row.word in STARTED and row.heard_ms is not None \
            and now_ms - row.heard_ms >= target.deadline_ms:
        silent = (now_ms - row.heard_ms) // 1000
        return _final(row, ota.FAILURE, f"silent for {silent} s after it started downloading",
                      now_ms)
    if row.word != ota.COMMITTED or row.committed_ms is None:
        return row
    breaches = []
    if row.reset_cause is not None:
        breaches.append(f"reset after commit ({row.reset_cause})")
    if row.baseline_heap and row.heap_min is not None \
            and row.heap_min < target.heap_ratio * row.baseline_heap:
        breaches.append(f"heap_low {row.heap_min} < {round(target.heap_ratio * 100, 1):g}%"
                        f" of {row.baseline_heap}")
    if breaches:  # a reset or a heap low cannot be undone by anything later
        return _final(row, ota.FAILURE, "; ".join(breaches), now_ms)
    if now_ms < row.committed_ms + target.soak_ms:
        return row
    if row.beat_ms is None or row.beat_ms < row.committed_ms + target.soak_ms // 2:
        breaches.append(f"no state on {target.version} in the second half of the soak")
    if row.committed_t is None or not records_since(row.device, row.committed_t):
        breaches.append("records stuck since commit")
    if breaches:
        return _final(row, ota.FAILURE, "; ".join(breaches), now_ms)
    return _final(row, ota.SUCCESS, "", now_ms)


def _final(row: RolloutDeviceRow, word: str, reason: str, now_ms: int) -> RolloutDeviceRow:
    return replace(row, word=word, reason=reason, since_ms=now_ms)
