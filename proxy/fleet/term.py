"""The judge's lease as this replica sees it: pure bookkeeping, no I/O.

Redis expires the lease ``seconds`` after the command that set or renewed it
reached Redis; this replica only knows when it *sent* that command. Counting
from the send time (before the answer) means the replica stops believing it
leads no later than Redis lets the key expire, whatever the round trip took.
A failed or refused renewal ends the term at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LeaseTerm:
    seconds: float
    valid_until: float = 0.0
    """Monotonic time until which this replica may judge (0: not leading)."""

    def granted(self, sent_at: float) -> bool:
        """The lease was taken or renewed by a command sent at ``sent_at``. True when
        this starts a term (the replica was not leading just before)."""
        starts = self.valid_until <= sent_at
        self.valid_until = sent_at + self.seconds
        return starts

    def lost(self) -> bool:
        """A refused or failed renewal. True when this ends a term."""
        ended = self.valid_until > 0
        self.valid_until = 0.0
        return ended

    def held(self, now: float) -> bool:
        return now < self.valid_until
