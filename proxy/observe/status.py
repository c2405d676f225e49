"""The flag table of `GET /status` and `turnout status` (SPEC §2, §11), pure functions."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from proxy.config.inactive import is_active
from proxy.control.state import FlagOverride
from proxy.decision.flag_rule import FlagRule
from proxy.decision.sides import BACKEND_NAMES
from proxy.decision.table import UNMATCHED_FLAG, RoutingTable
from proxy.observe.stats import DURATION_BOUNDS, Snapshot, quantile
from proxy.shadow.report import flag_shadow_status

RATE_WINDOW_SECONDS = 10


def request_totals(snapshot: Snapshot) -> dict[tuple[str, str], int]:
    """Requests so far per (flag, backend)."""
    totals: dict[tuple[str, str], int] = {}
    for _route, flag, backend, _method, _code, count in snapshot["requests"]:
        key = (flag, backend)
        totals[key] = totals.get(key, 0) + count
    return totals


class RateWindow:
    """Requests per second per (flag, backend) over the last ~10 s of samples."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[tuple[str, str], int]]] = deque(
            maxlen=RATE_WINDOW_SECONDS + 1
        )

    def add(self, snapshot: Snapshot, now: float | None = None) -> None:
        self._samples.append((time.monotonic() if now is None else now, request_totals(snapshot)))

    def rates(self) -> dict[tuple[str, str], float]:
        if len(self._samples) < 2:
            return {}
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        elapsed = end - start
        if elapsed <= 0:
            return {}
        return {key: max(0, count - first.get(key, 0)) / elapsed for key, count in last.items()}


def phase(percent: float, shadowing: bool, rolled_back: bool = False) -> str:
    """The migration phase of a flag (SPEC §11): legacy, shadow, canary, new or rolled_back.

    ``canary`` is SPEC §11's name for any percent between 0 and 100, whether or not
    a canary block drives it; `status` shows the canary's own state beside it."""
    if rolled_back:
        return "rolled_back"
    if percent <= 0:
        return "shadow" if shadowing else "legacy"
    if percent >= 100:
        return "new"
    return "canary"


def _per_backend(snapshot: Snapshot, flag: str) -> dict[str, dict[str, Any]]:
    totals = {name: {"requests": 0, "errors": 0} for name in BACKEND_NAMES}
    for _route, row_flag, backend, _method, code, count in snapshot["requests"]:
        if row_flag != flag or backend not in totals:
            continue
        totals[backend]["requests"] += count
        if int(code) >= 500:
            totals[backend]["errors"] += count
    buckets = {name: [0] * (len(DURATION_BOUNDS) + 1) for name in BACKEND_NAMES}
    for _route, row_flag, backend, row_buckets, _total, _count in snapshot["durations"]:
        if row_flag == flag and backend in buckets:
            buckets[backend] = [a + b for a, b in zip(buckets[backend], row_buckets, strict=True)]
    result: dict[str, dict[str, Any]] = {}
    for name in BACKEND_NAMES:
        requests, errors = totals[name]["requests"], totals[name]["errors"]
        result[name] = {
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "p99_seconds": quantile(buckets[name], 0.99),
        }
    return result


def flag_status(
    rule: FlagRule,
    snapshot: Snapshot,
    override: FlagOverride | None,
    rates: dict[tuple[str, str], float],
    canary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    percent = rule.percent
    backends = _per_backend(snapshot, rule.name)
    for name, numbers in backends.items():
        numbers["rps"] = rates.get((rule.name, name), 0.0)
    return {
        "name": rule.name,
        "phase": phase(
            percent,
            rule.config.shadow is not None and is_active("shadow"),
            rolled_back=override is not None and override.reason == "rollback",
        ),
        "percent": percent,
        "file_percent": rule.file_percent,
        "override": asdict(override) if override is not None else None,
        "canary": canary,
        "backends": backends,
        "shadow": flag_shadow_status(snapshot, rule.name) if rule.config.shadow else None,
    }


def status_document(
    table: RoutingTable[Any],
    snapshot: Snapshot,
    overrides: Mapping[str, FlagOverride],
    rates: dict[tuple[str, str], float],
    coverage: Mapping[str, Any] | None = None,
    canaries: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON body of GET /status.

    ``coverage`` (``proxy.coverage.report.status_coverage``, or an ``error``)
    is there when the config names the two OpenAPI documents: its ``flags``
    part goes into each flag, the rest is the document's ``coverage``.
    ``canaries``: each canary flag's progress.
    """
    canaries = canaries or {}
    flags = [
        flag_status(rule, snapshot, overrides.get(name), rates, canaries.get(name))
        for name, rule in table.flags.items()
    ]
    document: dict[str, Any] = {
        "config_hash": table.config_hash,
        "flags": flags,
        "unmatched": {"requests": _unmatched_requests(snapshot)},
        "backends": {
            name: {"up": bool(snapshot["backend_up"].get(name, 1))} for name in BACKEND_NAMES
        },
    }
    if coverage is not None:
        per_flag = coverage.get("flags") or {}
        for flag in flags:
            flag["coverage"] = per_flag.get(flag["name"])
        document["coverage"] = {key: value for key, value in coverage.items() if key != "flags"}
    return document


def _unmatched_requests(snapshot: Snapshot) -> int:
    """Requests no route matched (always legacy), which no flag's numbers include."""
    return sum(
        count for _r, flag, _b, _m, _c, count in snapshot["requests"] if flag == UNMATCHED_FLAG
    )
