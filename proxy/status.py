"""The flag table of `GET /status` and `turnout status` (SPEC §2, §11), pure functions."""

from __future__ import annotations

from typing import Any

from proxy.decide import BACKEND_NAMES, FlagRule
from proxy.stats import DURATION_BOUNDS, Snapshot, quantile
from proxy.table import RoutingTable


def phase(percent: float, shadowing: bool, rolled_back: bool = False) -> str:
    """The migration phase of a flag: legacy, shadow, canary, new or rolled_back."""
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


def flag_status(rule: FlagRule, snapshot: Snapshot) -> dict[str, Any]:
    percent = rule.percent
    override = None if percent == rule.file_percent else percent
    return {
        "name": rule.name,
        "phase": phase(percent, rule.config.shadow is not None),
        "percent": percent,
        "file_percent": rule.file_percent,
        "override": override,
        "backends": _per_backend(snapshot, rule.name),
    }


def status_document(table: RoutingTable, snapshot: Snapshot) -> dict[str, Any]:
    """The JSON body of GET /status."""
    return {
        "config_hash": table.config_hash,
        "flags": [flag_status(rule, snapshot) for rule in table.flags.values()],
        "backends": {
            name: {"up": bool(snapshot["backend_up"].get(name, 1))} for name in BACKEND_NAMES
        },
    }
