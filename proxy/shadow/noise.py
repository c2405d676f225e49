"""Noise cancelling, Diffy's idea: a field that differs between two answers of the
*same* backend is noise, and differs between backends significantly more often
than that before it counts as a real difference.

The shell sends a calibration sample of safe requests to the primary's backend
twice and records which field patterns differed (``record_within``); every
legacy-against-new comparison is recorded too (``record_between``). A pattern
is noise while its between-backends difference rate does not exceed its
within-backend rate by both a relative margin (default 20 %) and an absolute
one (default 0.03 % of requests) — Diffy's two thresholds. Pure and bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_PATTERNS = 500
"""Distinct field patterns counted per flag; more are not counted (and not noise)."""


@dataclass(slots=True)
class NoiseModel:
    relative_threshold: float = 0.20
    absolute_threshold: float = 0.0003
    within_total: int = 0
    between_total: int = 0
    within: dict[str, int] = field(default_factory=dict)
    between: dict[str, int] = field(default_factory=dict)

    def record_within(self, patterns: Iterable[str]) -> None:
        """One calibration pair: the primary's backend answered the same request twice."""
        self.within_total += 1
        _count(self.within, patterns)

    def record_between(self, patterns: Iterable[str]) -> None:
        """One legacy-against-new comparison."""
        self.between_total += 1
        _count(self.between, patterns)

    def is_noise(self, pattern: str) -> bool:
        within = self.within.get(pattern, 0)
        if within == 0 or self.within_total == 0:
            return False
        within_rate = within / self.within_total
        between_rate = self.between.get(pattern, 0) / max(self.between_total, 1)
        excess = between_rate - within_rate
        significant = (
            excess > self.absolute_threshold and excess > self.relative_threshold * within_rate
        )
        return not significant


def _count(counts: dict[str, int], patterns: Iterable[str]) -> None:
    for pattern in set(patterns):
        if pattern in counts or len(counts) < MAX_PATTERNS:
            counts[pattern] = counts.get(pattern, 0) + 1
