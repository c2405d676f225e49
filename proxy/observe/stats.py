"""Request counters kept on the hot path, and their mergeable snapshots.

The hot path does a dict increment and a list increment per request, on a
``Series`` object the compiled route already holds: no label lookups, no locks,
no prometheus-client objects. ``/metrics`` renders a *snapshot* of these plain
numbers; with several worker processes the supervisor merges the workers'
snapshots (counters add up), so the totals are the whole server's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

# Upper bounds (seconds) of the latency histogram buckets; +Inf is implicit.
DURATION_BOUNDS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# The proxy's own added latency is small: finer buckets, from 0.1 ms to 1 s.
OVERHEAD_BOUNDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"

SeriesKey = tuple[str, str, str]  # route, flag, backend
Snapshot = dict[str, Any]


class Series:
    """Counters of one (route, flag, backend): requests by (method, code), and latency."""

    __slots__ = ("buckets", "codes", "count", "total_seconds")

    def __init__(self) -> None:
        self.codes: dict[tuple[str, int], int] = {}
        self.buckets = [0] * (len(DURATION_BOUNDS) + 1)
        self.count = 0
        self.total_seconds = 0.0

    def observe(self, method: str, status: int, seconds: float) -> None:
        key = (method if method in KNOWN_METHODS else OTHER_METHOD, status)
        codes = self.codes
        codes[key] = codes.get(key, 0) + 1
        self.buckets[bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.count += 1
        self.total_seconds += seconds


class Overhead:
    """Turnout's own added latency per request: its total time minus the time spent
    waiting for backends (attempt start to response head). One bisect per request."""

    __slots__ = ("buckets", "total_seconds")

    def __init__(self) -> None:
        self.buckets = [0] * (len(OVERHEAD_BOUNDS) + 1)
        self.total_seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(OVERHEAD_BOUNDS, seconds)] += 1
        self.total_seconds += seconds


class Stats:
    """All counters of one process. Series survive config reloads (counters never go back)."""

    def __init__(self) -> None:
        self.series: dict[SeriesKey, Series] = {}
        self.upstream_errors: dict[tuple[str, str], int] = {}
        self.fallbacks: dict[tuple[str, str, str, str], int] = {}
        self.shadow: dict[tuple[str, str], int] = {}
        self.canary_judgements: dict[tuple[str, str], int] = {}  # (flag, result)
        self.backend_up: dict[str, int] = {"legacy": 1, "new": 1}
        self.overhead = Overhead()

    def series_for(self, route: str, flag: str, backend: str) -> Series:
        key = (route, flag, backend)
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = Series()
        return found

    def count_upstream_error(self, backend: str, kind: str) -> None:
        key = (backend, kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def count_canary_judgement(self, flag: str, result: str) -> None:
        key = (flag, result)
        self.canary_judgements[key] = self.canary_judgements.get(key, 0) + 1

    def snapshot(self) -> Snapshot:
        """Plain JSON-able numbers (lists, not tuples as keys), for /metrics and IPC."""
        return {
            "requests": [
                [route, flag, backend, method, code, n]
                for (route, flag, backend), series in self.series.items()
                for (method, code), n in series.codes.items()
            ],
            "durations": [
                [route, flag, backend, list(series.buckets), series.total_seconds, series.count]
                for (route, flag, backend), series in self.series.items()
            ],
            "upstream_errors": [[*key, n] for key, n in self.upstream_errors.items()],
            "fallbacks": [[*key, n] for key, n in self.fallbacks.items()],
            "shadow": [[*key, n] for key, n in self.shadow.items()],
            "canary_judgements": [[*key, n] for key, n in self.canary_judgements.items()],
            "backend_up": dict(self.backend_up),
            "overhead": [list(self.overhead.buckets), self.overhead.total_seconds],
        }


def _merge_counts(rows: Iterable[list[Any]]) -> list[list[Any]]:
    merged: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = tuple(row[:-1])
        merged[key] = merged.get(key, 0) + row[-1]
    return [[*key, n] for key, n in merged.items()]


def _merge_durations(rows: Iterable[list[Any]]) -> list[list[Any]]:
    merged: dict[tuple[str, str, str], list[Any]] = {}
    for route, flag, backend, buckets, total, count in rows:
        key = (route, flag, backend)
        if key not in merged:
            merged[key] = [list(buckets), total, count]
            continue
        into = merged[key]
        into[0] = [a + b for a, b in zip(into[0], buckets, strict=True)]
        into[1] += total
        into[2] += count
    return [[*key, *value] for key, value in merged.items()]


def _merge_overhead(parts: list[list[Any]]) -> list[Any]:
    buckets = [0] * (len(OVERHEAD_BOUNDS) + 1)
    total = 0.0
    for part_buckets, part_total in parts:
        buckets = [a + b for a, b in zip(buckets, part_buckets, strict=True)]
        total += part_total
    return [buckets, total]


def merge_snapshots(snapshots: list[Snapshot]) -> Snapshot:
    """One snapshot for the whole server: counters add up; a backend is up only if
    every worker sees it up (passive results are per process)."""
    if len(snapshots) == 1:
        return snapshots[0]
    merged: Snapshot = {
        "durations": _merge_durations(row for s in snapshots for row in s["durations"]),
        "backend_up": {},
    }
    for name in ("requests", "upstream_errors", "fallbacks", "shadow"):
        merged[name] = _merge_counts(row for s in snapshots for row in s[name])
    # Optional rows (a process that shadows or runs a canary): counts add up.
    for name in ("shadow_diffs", "shadow_dropped", "canary_judgements"):
        merged[name] = _merge_counts(row for s in snapshots for row in s.get(name, ()))
    # The shadow's per-route report: a pattern is noise if any process found it so,
    # the first example stands.
    for name in ("shadow_noise", "shadow_examples"):
        firsts: dict[tuple[Any, ...], list[Any]] = {}
        for snapshot in snapshots:
            for row in snapshot.get(name, ()):
                firsts.setdefault(tuple(row[:3]), row)
        merged[name] = list(firsts.values())
    merged["overhead"] = _merge_overhead([s["overhead"] for s in snapshots if "overhead" in s])
    for snapshot in snapshots:
        for backend, up in snapshot["backend_up"].items():
            merged["backend_up"][backend] = min(up, merged["backend_up"].get(backend, 1))
    return merged


def quantile(buckets: list[int], q: float) -> float | None:
    """The q-quantile of a histogram, interpolated inside its bucket as Prometheus's
    histogram_quantile does; None without observations. The +Inf bucket reports
    the largest finite bound."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(DURATION_BOUNDS):
                return DURATION_BOUNDS[-1]
            lower = DURATION_BOUNDS[index - 1] if index > 0 else 0.0
            upper = DURATION_BOUNDS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return DURATION_BOUNDS[-1]
