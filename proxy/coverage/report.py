"""The migration map as data: per operation, per flag, per phase, and the shares (pure).

``report_document`` builds the JSON form that ``--format json`` prints; the
table and Markdown forms (``proxy.coverage.render``) are drawn from it, so the
three always say the same. A flag's percent and phase come from the config or,
with ``--admin``, from the live ``GET /status`` (overrides and roll-backs
included); the phase is the one ``/status`` computes (``observe.status.phase``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.models import Config
from proxy.config.values import is_number
from proxy.coverage.matching import CoverageMap, Row
from proxy.coverage.operations import Document
from proxy.decision.table import UNMATCHED_FLAG
from proxy.observe.status import phase


@dataclass(frozen=True, slots=True)
class FlagState:
    percent: float
    phase: str


UNMATCHED_STATE = FlagState(0.0, "legacy")
"""Requests no route matches always go to legacy."""


def states_from_config(config: Config) -> dict[str, FlagState]:
    """Each flag's percent in the file and the phase that gives."""
    return {
        name: FlagState(flag.percent, phase(flag.percent, flag.shadow is not None))
        for name, flag in config.flags.items()
    }


def states_from_status(status: Mapping[str, Any]) -> dict[str, FlagState]:
    """Each flag's live percent and phase from a ``GET /status`` document."""
    states: dict[str, FlagState] = {}
    for flag in status.get("flags") or []:
        if not isinstance(flag, Mapping) or not isinstance(flag.get("name"), str):
            continue
        percent = flag.get("percent")
        if is_number(percent):
            states[flag["name"]] = FlagState(float(percent), str(flag.get("phase") or "?"))
    return states


def live_requests(status: Mapping[str, Any]) -> dict[str, Any]:
    """Requests counted so far by the proxy and how many of them ``new`` answered."""
    new = total = 0
    for flag in status.get("flags") or []:
        backends = flag.get("backends") if isinstance(flag, Mapping) else None
        if not isinstance(backends, Mapping):
            continue
        for side, numbers in backends.items():
            count = numbers.get("requests") if isinstance(numbers, Mapping) else None
            if isinstance(count, int):
                total += count
                new += count if side == "new" else 0
    unmatched = status.get("unmatched")
    if isinstance(unmatched, Mapping) and isinstance(unmatched.get("requests"), int):
        total += unmatched["requests"]
    return {"new": new, "total": total, "share": _share(new, total)}


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _state(row: Row, states: Mapping[str, FlagState]) -> FlagState:
    if row.flag is None:
        return UNMATCHED_STATE
    return states.get(row.flag, UNMATCHED_STATE)


def _document(doc: Document) -> dict[str, Any]:
    return {
        "source": doc.source,
        "openapi": doc.version,
        "title": doc.title,
        "operations": len(doc.operations),
    }


def _operation(row: Row, states: Mapping[str, FlagState]) -> dict[str, Any]:
    state = _state(row, states)
    in_new = row.counterpart is not None
    return {
        "method": row.operation.method,
        "path": row.operation.path,
        "in_new": in_new,
        "new_path": row.counterpart.path if row.counterpart is not None else None,
        "route": row.route,
        "flag": row.flag_name,
        "percent": state.percent,
        "phase": state.phase,
        "served_by_new": in_new and state.percent >= 100,
    }


def _flags(
    coverage: CoverageMap, order: list[str], states: Mapping[str, FlagState]
) -> list[dict[str, Any]]:
    counts: dict[str, list[int]] = {name: [0, 0] for name in order}
    for row in coverage.rows:
        numbers = counts.setdefault(row.flag_name, [0, 0])
        numbers[0] += 1
        numbers[1] += row.counterpart is not None
    result = []
    for name, (operations, in_new) in counts.items():
        state = UNMATCHED_STATE if name == UNMATCHED_FLAG else states.get(name, UNMATCHED_STATE)
        result.append(
            {
                "flag": name,
                "operations": operations,
                "in_new": in_new,
                "percent": state.percent,
                "phase": state.phase,
            }
        )
    return result


PHASES = ("legacy", "shadow", "canary", "new", "rolled_back")


def _phases(operations: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Operations and how many of them new has, per phase, in migration order."""
    phases: dict[str, dict[str, int]] = {}
    for op in sorted(operations, key=lambda op: _phase_rank(op["phase"])):
        numbers = phases.setdefault(op["phase"], {"operations": 0, "in_new": 0})
        numbers["operations"] += 1
        numbers["in_new"] += op["in_new"]
    return phases


def _phase_rank(name: str) -> int:
    return PHASES.index(name) if name in PHASES else len(PHASES)


def report_document(
    coverage: CoverageMap,
    config: Config,
    states: Mapping[str, FlagState] | None = None,
    live: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole report; ``states`` default to the config's, ``live`` is ``live_requests``."""
    states = {**states_from_config(config), **(states or {})}
    operations = [_operation(row, states) for row in coverage.rows]
    served = sum(op["served_by_new"] for op in operations)
    return {
        "legacy": _document(coverage.legacy),
        "new": _document(coverage.new),
        "operations": operations,
        "only_in_new": [
            {
                "method": row.operation.method,
                "path": row.operation.path,
                "route": row.route,
                "flag": row.flag_name,
            }
            for row in coverage.only_in_new
        ],
        "flags": _flags(coverage, list(config.flags), states),
        "phases": _phases(operations),
        "served_by_new_at_100": {
            "operations": served,
            "of": len(operations),
            "share": _share(served, len(operations)),
        },
        "live_requests": dict(live) if live is not None else None,
    }


def status_coverage(coverage: CoverageMap, percents: Mapping[str, float]) -> dict[str, Any]:
    """The ``coverage`` part of ``GET /status``: a summary, and per-flag numbers in ``flags``.

    Per flag: the legacy operations routed to it, how many of them new has, and
    ``served_by_new`` = in_new / operations x percent / 100, the share of the
    flag's legacy operations new answers at its current percent (counting each
    operation once, whatever its traffic).
    """
    counts: dict[str, list[int]] = {name: [0, 0] for name in percents}
    unmatched = served = 0
    for row in coverage.rows:
        in_new = row.counterpart is not None
        if row.flag is None or row.flag not in counts:
            unmatched += 1
            continue
        counts[row.flag][0] += 1
        counts[row.flag][1] += in_new
        served += in_new and percents[row.flag] >= 100
    flags = {
        name: {
            "legacy_operations": operations,
            "in_new": in_new,
            "served_by_new": _share(in_new * percents[name] / 100, operations),
        }
        for name, (operations, in_new) in counts.items()
    }
    total = len(coverage.rows)
    summary = {
        "legacy": _document(coverage.legacy),
        "new": _document(coverage.new),
        "unmatched_operations": unmatched,
        "missing_in_new": sum(row.counterpart is None for row in coverage.rows),
        "only_in_new": len(coverage.only_in_new),
        "served_by_new_at_100": {"operations": served, "of": total, "share": _share(served, total)},
    }
    return {**summary, "flags": flags}
