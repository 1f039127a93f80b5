"""The (device, seq) rule that makes at-least-once delivery store each record exactly once.

Per device the gateway keeps `acked`, the highest seq up to which it holds every record
(starting at 0; a device's first record is seq 1), and `ahead`, the seqs it holds above a gap.
A seq <= acked or in `ahead` is a duplicate: not stored again, but acked again. When the gap
closes, `acked` advances over the seqs that were ahead.

A device whose full buffer dropped records says so with a `floor` in its state: the lowest seq
it still holds. The gateway then stops waiting for the seqs below it, but never beyond what
the device has shown to exist: the floor in effect is min(claimed floor, highest seq received
+ 1). So a floor claimed before the records above it arrive (the state goes first after a
reconnect) takes effect when they do, and a device that claims a floor far ahead of anything
it sent skips nothing. Every step costs O(len(ahead)), never O(floor - acked).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SeqTracker:
    """Mutable working copy for one device; the store persists what changed."""

    acked: int = 0
    ahead: set[int] = field(default_factory=set)
    floor: int = 0  # the lowest seq the device says it still holds (0: never said)
    highest: int = 0  # highest seq received (derived from acked and ahead when loaded)
    skipped: int = 0  # seqs given up in this process's life (the device dropped them)

    @classmethod
    def restored(cls, acked: int, ahead: set[int], floor: int) -> SeqTracker:
        return cls(acked, ahead, floor, max(ahead, default=acked))

    def copy(self) -> SeqTracker:
        return SeqTracker(self.acked, set(self.ahead), self.floor, self.highest, self.skipped)

    def accept(self, seq: int) -> bool:
        """Record `seq`; True if it is new (store it), False if it is a duplicate."""
        if seq <= self.acked or seq in self.ahead:
            return False
        if seq > self.highest:
            self.highest = seq
        if seq == self.acked + 1:
            self.acked = seq
            self._close_gap()
        else:
            self.ahead.add(seq)
        self._apply_floor()
        return True

    def claim_floor(self, floor: int) -> None:
        """The device says nothing below `floor` will ever come (dropped when its buffer was
        full). Takes effect up to the highest seq received + 1."""
        if floor > self.floor:
            self.floor = floor
            self._apply_floor()

    def _apply_floor(self) -> None:
        effective = min(self.floor, self.highest + 1)
        if effective - 1 <= self.acked:
            return
        below = {s for s in self.ahead if s < effective}
        self.skipped += (effective - 1 - self.acked) - len(below)
        self.acked = effective - 1
        self.ahead -= below
        self._close_gap()

    def _close_gap(self) -> None:
        while self.acked + 1 in self.ahead:
            self.acked += 1
            self.ahead.discard(self.acked)
