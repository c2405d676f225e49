"""Per-interval numbers of a canary flag (pure data; ``proxy.canary.tap`` fills them).

Per flag and backend: requests, errors and a latency histogram over the
Prometheus buckets (``DURATION_BOUNDS``), no per-request samples. At each
interval boundary the judge *takes* the window and a fresh one replaces it
(one attribute store; the data path and the judge share one event loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from proxy.observe.stats import DURATION_BOUNDS


def _empty_buckets() -> list[int]:
    return [0] * (len(DURATION_BOUNDS) + 1)


@dataclass
class SideNumbers:
    """One backend's numbers in one interval."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=_empty_buckets)

    def to_json(self) -> dict[str, object]:
        return {"requests": self.requests, "errors": self.errors}


@dataclass
class IntervalNumbers:
    """A flag's numbers in one interval: ``sides[0]`` legacy, ``sides[1]`` new."""

    sides: tuple[SideNumbers, SideNumbers] = field(
        default_factory=lambda: (SideNumbers(), SideNumbers())
    )

    def add_failures(self, backend: int, count: int) -> None:
        """``count`` requests meant for ``backend`` that it could not take (it was
        ejected: they failed over to the other side) count as its failed requests."""
        side = self.sides[backend]
        side.requests += count
        side.errors += count

    @property
    def legacy(self) -> SideNumbers:
        return self.sides[0]

    @property
    def new(self) -> SideNumbers:
        return self.sides[1]


class ShadowNumbers(NamedTuple):
    """Shadow comparisons of a flag since the last call: what the parity check judges.

    ``errors``: mirrored requests to new that failed; they count as new's errors
    (and requests) in the error-rate checks.
    """

    compared: int
    mismatched: int
    errors: int = 0
