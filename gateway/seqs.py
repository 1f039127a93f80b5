"""The (device, seq) rule that makes at-least-once delivery store each record exactly once.

Per device the gateway keeps `acked`, the highest seq up to which it holds every record
(starting at 0; a device's first record is seq 1), and `ahead`, the seqs it holds above a gap.
A seq <= acked or in `ahead` is a duplicate: not stored again, but acked again. When the gap
closes, `acked` advances over the seqs that were ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SeqTracker:
    """Mutable working copy for one device; the store persists what changed."""

    acked: int = 0
    ahead: set[int] = field(default_factory=set)

    def copy(self) -> SeqTracker:
        return SeqTracker(self.acked, set(self.ahead))

    def accept(self, seq: int) -> bool:
        """Record `seq`; True if it is new (store it), False if it is a duplicate."""
        if seq <= self.acked or seq in self.ahead:
            return False
        if seq == self.acked + 1:
            self.acked = seq
            while self.acked + 1 in self.ahead:
                self.acked += 1
                self.ahead.discard(self.acked)
        else:
            self.ahead.add(seq)
        return True

    def skip_to(self, floor: int) -> int:
        """The device says nothing below `floor` will ever come (dropped when its buffer was
        full): stop waiting for it. Returns how many seqs were given up."""
        if floor - 1 <= self.acked:
            return 0
        missing = sum(1 for s in range(self.acked + 1, floor) if s not in self.ahead)
        self.acked = floor - 1
        self.ahead = {s for s in self.ahead if s > self.acked}
        while self.acked + 1 in self.ahead:
            self.acked += 1
            self.ahead.discard(self.acked)
        return missing
