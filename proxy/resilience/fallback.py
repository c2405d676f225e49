"""Fallback decisions (SPEC §4 step 6), pure functions of their inputs.

A failed attempt is replayed once on the other backend when the flag's policy
lists the failure, the method is safe to repeat, and the flag's budget allows.
A connect error means nothing reached the backend, so any method may be
replayed; anything else may have reached it, so only the listed methods
(default GET, HEAD, OPTIONS: RFC 9110 §9.2.2, a proxy must not repeat
non-idempotent requests on its own).

Listed statuses are 5xx codes and, for a migration, 404/405: the answer of a
new backend for an operation it has not built yet. Such an answer is replaced
by the other backend's like a 5xx is, under the same method rule and budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.models import Fallback

CONNECT_ERROR = "connect_error"
WINDOW_SECONDS = 10


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    kinds: frozenset[str]
    statuses: frozenset[int]
    methods: frozenset[str]
    max_replay_body: int

    @classmethod
    def from_config(cls, config: Fallback) -> FallbackPolicy:
        return cls(
            kinds=frozenset(str(t) for t in config.on if isinstance(t, str)),
            statuses=frozenset(t for t in config.on if isinstance(t, int)),
            methods=frozenset(config.methods),
            max_replay_body=config.max_replay_body_bytes,
        )

    def covers_error(self, kind: str, method: str) -> bool:
        """Whether a failed attempt (no response) of ``kind`` may be replayed."""
        if kind not in self.kinds:
            return False
        return kind == CONNECT_ERROR or method in self.methods

    def covers_status(self, status: int, method: str) -> bool:
        """Whether an answer with ``status`` is replaced by the other backend's."""
        return status in self.statuses and method in self.methods


class FallbackBudget:
    """Caps fallbacks to a share of a flag's requests over a sliding window.

    Counts live in one-second slots over the last ``WINDOW_SECONDS``, so a dead
    backend can add at most the budget fraction to the other one's load (Envoy's
    retry budget, per flag). At least one fallback per window is always allowed.
    """

    __slots__ = ("_fallbacks", "_fraction", "_requests", "_slot_seconds")

    def __init__(self, fraction: float) -> None:
        self._fraction = fraction
        self._requests = [0] * WINDOW_SECONDS
        self._fallbacks = [0] * WINDOW_SECONDS
        self._slot_seconds = [0] * WINDOW_SECONDS

    def _slot(self, now: float) -> int:
        second = int(now)
        index = second % WINDOW_SECONDS
        if self._slot_seconds[index] != second:
            self._slot_seconds[index] = second
            self._requests[index] = 0
            self._fallbacks[index] = 0
        return index

    def _window_totals(self, now: float) -> tuple[int, int]:
        oldest = int(now) - WINDOW_SECONDS + 1
        requests = fallbacks = 0
        for index, second in enumerate(self._slot_seconds):
            if second >= oldest:
                requests += self._requests[index]
                fallbacks += self._fallbacks[index]
        return requests, fallbacks

    def count_request(self, now: float) -> None:
        self._requests[self._slot(now)] += 1

    def try_spend(self, now: float) -> bool:
        """Take one fallback from the budget if the window allows it."""
        requests, fallbacks = self._window_totals(now)
        if fallbacks + 1 > max(1.0, self._fraction * requests):
            return False
        self._fallbacks[self._slot(now)] += 1
        return True
