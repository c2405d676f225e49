"""`turnout diffs`: what the discrepancy log says, per flag and route.

For each route, the field paths that differed (indices generalised, as in
``/status``) with how many mismatches named them, whether they were noise,
and one example. Pure over the log's lines; the CLI reads the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_INDEX = re.compile(r"\[\d+\]")


@dataclass(slots=True)
class PathSummary:
    count: int = 0
    noise: bool = False
    example: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Summary:
    mismatches: int = 0
    unreadable: int = 0
    routes: dict[tuple[str, str], dict[str, PathSummary]] = field(default_factory=dict)


def summarize(lines: Iterable[str], flag: str | None = None) -> Summary:
    summary = Summary()
    for line in lines:
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            summary.unreadable += 1
            continue
        if not isinstance(record, dict) or (flag is not None and record.get("flag") != flag):
            continue
        summary.mismatches += 1
        paths = summary.routes.setdefault((str(record.get("flag")), str(record.get("route"))), {})
        for diff in record.get("diffs") or ():
            pattern = _INDEX.sub("[*]", str(diff.get("path")))
            found = paths.setdefault(pattern, PathSummary())
            found.count += 1
            found.noise = found.noise or bool(diff.get("noise"))
            if not found.example:
                found.example = {
                    "path": record.get("path"),
                    "legacy": diff.get("legacy"),
                    "new": diff.get("new"),
                }
    return summary


def format_summary(summary: Summary, top: int = 10) -> str:
    if not summary.mismatches:
        return "no mismatches in the discrepancy log\n"
    lines = [f"{summary.mismatches} mismatches"]
    if summary.unreadable:
        lines[0] += f" ({summary.unreadable} unreadable lines skipped)"
    for (flag, route), paths in sorted(summary.routes.items()):
        lines.append(f"\n{flag}  {route}")
        ranked = sorted(paths.items(), key=lambda item: -item[1].count)[:top]
        for pattern, found in ranked:
            example = found.example
            shown = f"{example.get('legacy')!r} → {example.get('new')!r} at {example.get('path')}"
            noise = "  (noise)" if found.noise else ""
            lines.append(f"  {found.count:6d}  {pattern}{noise}  e.g. {shown}")
    return "\n".join(lines) + "\n"


def log_files(path: Path) -> list[Path]:
    """The log and its rotated backups, oldest first."""
    backups = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    return [*backups, *([path] if path.exists() else [])]
