"""What shadowing found for one flag: results, and per route the differing fields.

A comparison's field diffs are split into noise and real differences (by the
flag's ``NoiseModel``); any real difference makes it a mismatch. Per route the
report keeps, for each differing field pattern, a count, whether it is noise
now, and one example. Bounded: at most ``MAX_PATHS_PER_ROUTE`` patterns per
route and ``MAX_ROUTES`` routes; what does not fit is counted, not kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.shadow.diff import FieldDiff
from proxy.shadow.noise import NoiseModel

MAX_PATHS_PER_ROUTE = 100
MAX_ROUTES = 200
TOP_PATHS_SHOWN = 10
RESULTS = ("match", "mismatch", "error", "dropped")


@dataclass(slots=True)
class PathCount:
    count: int
    example: tuple[Any, Any]  # (legacy, new)


@dataclass(slots=True)
class RouteReport:
    paths: dict[str, PathCount] = field(default_factory=dict)
    untracked: int = 0  # diffs on patterns beyond the bound

    def add(self, diff: FieldDiff) -> None:
        pattern = diff.pattern
        found = self.paths.get(pattern)
        if found is not None:
            found.count += 1
        elif len(self.paths) < MAX_PATHS_PER_ROUTE:
            self.paths[pattern] = PathCount(1, (diff.legacy, diff.new))
        else:
            self.untracked += 1


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per shadow
class Verdict:
    result: str  # match or mismatch
    real: Sequence[FieldDiff]
    noise: Sequence[FieldDiff]


_MATCH = Verdict("match", (), ())


@dataclass(slots=True)
class FlagReport:
    noise: NoiseModel = field(default_factory=NoiseModel)
    results: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    routes: dict[str, RouteReport] = field(default_factory=dict)
    new_errors: int = 0  # shadows to new that got no answer or a 5xx (new's errors)

    def judge(self, route: str, diffs: Sequence[FieldDiff]) -> Verdict:
        """Record one legacy-against-new comparison and say whether it matched."""
        if not diffs:  # the common case, and the cheap one
            self.noise.between_total += 1
            self.results["match"] += 1
            return _MATCH
        self.noise.record_between(diff.pattern for diff in diffs)
        real = [d for d in diffs if not self.noise.is_noise(d.pattern)]
        noise = [d for d in diffs if self.noise.is_noise(d.pattern)]
        report = self._route(route)
        if report is not None:
            for diff in diffs:
                report.add(diff)
        verdict = Verdict("mismatch" if real else "match", real, noise)
        self.results[verdict.result] += 1
        return verdict

    def count_error(self) -> None:
        self.results["error"] += 1

    def count_dropped(self, reason: str) -> None:
        self.results["dropped"] += 1
        self.dropped[reason] += 1

    def _route(self, route: str) -> RouteReport | None:
        found = self.routes.get(route)
        if found is None and len(self.routes) < MAX_ROUTES:
            found = self.routes[route] = RouteReport()
        return found

    def rows(self, flag: str) -> dict[str, list[list[Any]]]:
        """The report as snapshot rows, which add up across worker processes:
        ``shadow_diffs`` [flag, route, pattern, count], ``shadow_noise`` [flag, pattern],
        ``shadow_examples`` [flag, route, pattern, legacy, new], ``shadow_dropped``
        [flag, reason, count]."""
        diffs, examples = [], []
        for route, report in self.routes.items():
            for pattern, found in report.paths.items():
                diffs.append([flag, route, pattern, found.count])
                examples.append([flag, route, pattern, *found.example])
        noise = [[flag, pattern] for pattern in self.noise.within if self.noise.is_noise(pattern)]
        dropped = [[flag, reason, n] for reason, n in self.dropped.items()]
        return {
            "shadow_diffs": diffs,
            "shadow_noise": noise,
            "shadow_examples": examples,
            "shadow_dropped": dropped,
        }


SNAPSHOT_KEYS = ("shadow_diffs", "shadow_noise", "shadow_examples", "shadow_dropped")


def flag_shadow_status(snapshot: dict[str, Any], flag: str) -> dict[str, Any]:
    """What ``/status`` shows of a flag's shadow, from a (merged) snapshot."""
    results = {result: 0 for result in RESULTS}
    for row_flag, result, count in snapshot.get("shadow", ()):
        if row_flag == flag:
            results[result] = results.get(result, 0) + count
    compared = results["match"] + results["mismatch"]
    noise = {pattern for row_flag, pattern in snapshot.get("shadow_noise", ()) if row_flag == flag}
    examples = {
        (route, pattern): {"legacy": legacy, "new": new}
        for row_flag, route, pattern, legacy, new in snapshot.get("shadow_examples", ())
        if row_flag == flag
    }
    routes: dict[str, list[dict[str, Any]]] = {}
    for row_flag, route, pattern, count in snapshot.get("shadow_diffs", ()):
        if row_flag == flag:
            routes.setdefault(route, []).append(
                {
                    "path": pattern,
                    "count": count,
                    "noise": pattern in noise,
                    "example": examples.get((route, pattern)),
                }
            )
    return {
        "parity": results["match"] / compared if compared else None,
        **results,
        "dropped_by_reason": {
            reason: n
            for row_flag, reason, n in snapshot.get("shadow_dropped", ())
            if row_flag == flag
        },
        "routes": {
            route: sorted(paths, key=lambda p: -p["count"])[:TOP_PATHS_SHOWN]
            for route, paths in routes.items()
        },
    }
