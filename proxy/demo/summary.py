"""Aggregation and formatting of the demo's traffic results. Pure: no I/O.

The traffic generator records one :class:`Sample` per request; these functions
fold samples into :class:`Stats` (one per one-second window, and one overall)
and render them. Columns that come from the proxy rather than from the
samples (shadow parity, canary step) travel in :class:`ExtraColumns` so they
can be filled in later without touching the sample-derived numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

BACKENDS: tuple[str, ...] = ("legacy", "new", "missing")
"""Values of :attr:`Sample.backend`: the proxy's ``x-turnout-backend`` header, or
``missing`` when the header is absent or unknown (or the request got no response)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the traffic generator saw it."""

    t: float  # completion time, seconds since the generator started
    endpoint: str  # endpoint label, e.g. "GET /api/users/{id}" (bounded set)
    backend: str  # one of BACKENDS
    status: int | None  # HTTP status; None for a connection error or timeout
    latency: float  # seconds from send until the whole body was read

    @property
    def is_error(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass(frozen=True, slots=True)
class BackendStats:
    requests: int
    errors: int  # 5xx answers plus connection errors
    p50: float | None  # seconds, over answered requests; None when there are none
    p99: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class ExtraColumns:
    """Numbers the proxy knows and the samples do not; ``None`` prints as ``n/a``."""

    shadow_parity: float | None = None  # share of compared shadow answers that matched
    canary_step: str | None = None  # e.g. "orders-api 5% progressing"


@dataclass(frozen=True, slots=True)
class Stats:
    """Aggregate over a set of samples that spans ``elapsed`` seconds."""

    elapsed: float
    requests: int
    per_backend: dict[str, BackendStats]
    per_endpoint: dict[str, dict[str, int]]  # endpoint -> backend -> requests
    extras: ExtraColumns = field(default_factory=ExtraColumns)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def share(self, backend: str) -> float:
        """Fraction (0..1) of the requests that ``backend`` served."""
        if not self.requests:
            return 0.0
        return self.per_backend[backend].requests / self.requests


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``p`` % at or below it."""
    if not values:
        return None
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def backend_stats(samples: Iterable[Sample]) -> BackendStats:
    """Stats of samples that all belong to one backend."""
    items = list(samples)
    latencies = [s.latency for s in items if s.status is not None]
    return BackendStats(
        requests=len(items),
        errors=sum(1 for s in items if s.is_error),
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
    )


def summarize(
    samples: Sequence[Sample], elapsed: float, extras: ExtraColumns | None = None
) -> Stats:
    """Aggregate ``samples`` (collected over ``elapsed`` seconds) per backend and endpoint."""
    per_endpoint: dict[str, Counter[str]] = {}
    for s in samples:
        per_endpoint.setdefault(s.endpoint, Counter())[s.backend] += 1
    return Stats(
        elapsed=elapsed,
        requests=len(samples),
        per_backend={b: backend_stats(s for s in samples if s.backend == b) for b in BACKENDS},
        per_endpoint={ep: dict(counts) for ep, counts in sorted(per_endpoint.items())},
        extras=extras or ExtraColumns(),
    )


def windows(samples: Sequence[Sample], width: float = 1.0) -> list[Stats]:
    """Split samples into consecutive windows of ``width`` seconds by completion time.

    Window ``k`` holds samples with ``k*width <= t < (k+1)*width``; empty windows
    between busy ones are kept so that the list index is the window number.
    """
    if not samples:
        return []
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(int(s.t // width), []).append(s)
    return [summarize(buckets.get(k, []), width) for k in range(max(buckets) + 1)]


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}ms"


def _pct(fraction: float | None, decimals: int = 1) -> str:
    return "n/a" if fraction is None else f"{fraction * 100:.{decimals}f}%"


def format_extras(extras: ExtraColumns) -> str:
    return f"shadow: {_pct(extras.shadow_parity)}  canary: {extras.canary_step or 'n/a'}"


def format_live_line(second: int, stats: Stats) -> str:
    """One line for one window: rate, then per side share, errors and latency."""
    parts = [f"[{second:>4}s] {stats.rate:6.1f} req/s"]
    for name in ("legacy", "new"):
        b = stats.per_backend[name]
        parts.append(
            f"{name} {_pct(stats.share(name)):>6} err {b.errors:<3} "
            f"p50 {_ms(b.p50):>7} p99 {_ms(b.p99):>7}"
        )
    missing = stats.per_backend["missing"]
    if missing.requests:
        parts.append(f"no-backend {missing.requests} (err {missing.errors})")
    parts.append(format_extras(stats.extras))
    return " | ".join(parts)


def _backend_table(stats: Stats) -> list[str]:
    header = f"{'backend':<10}{'requests':>10}{'share':>9}{'errors':>8}{'err%':>8}"
    lines = [header + f"{'p50':>10}{'p99':>10}"]
    for name in BACKENDS:
        b = stats.per_backend[name]
        if name == "missing" and not b.requests:
            continue
        lines.append(
            f"{name:<10}{b.requests:>10}{_pct(stats.share(name)):>9}{b.errors:>8}"
            f"{_pct(b.error_rate, 2):>8}{_ms(b.p50):>10}{_ms(b.p99):>10}"
        )
    return lines


def _endpoint_table(stats: Stats) -> list[str]:
    width = max((len(ep) for ep in stats.per_endpoint), default=8) + 2
    lines = [f"{'endpoint':<{width}}{'requests':>10}{'on new':>9}"]
    for endpoint, counts in stats.per_endpoint.items():
        total = sum(counts.values())
        on_new = counts.get("new", 0) / total if total else None
        lines.append(f"{endpoint:<{width}}{total:>10}{_pct(on_new):>9}")
    return lines


def format_final_summary(stats: Stats) -> str:
    """The multi-line summary printed when the demo stops."""
    title = (
        f"Turnout demo summary: {stats.elapsed:.1f}s, {stats.requests} requests, "
        f"{stats.rate:.1f} req/s"
    )
    lines = [title, "", *_backend_table(stats), "", *_endpoint_table(stats), ""]
    lines.append(format_extras(stats.extras))
    return "\n".join(lines) + "\n"
