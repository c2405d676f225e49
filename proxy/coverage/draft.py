"""``--write-routes``: draft ``flags:`` and ``routes:`` entries from a migration map (pure).

Three kinds of entries, each to its own new flag (named so as not to clash
with the config's):

- legacy operations new lacks are pinned to legacy (a flag at 0 %), so that
  raising a broader route's percent cannot send them to a backend without them
  (unless a route for exactly their path already sends them to a flag at 0 %,
  so that a merged draft is not drafted again);
- legacy operations no route matches and new has go to a flag at 0 %, ready to
  be raised;
- operations only new has and no route matches go to a flag at 100 % (legacy
  would answer them 404).

Paths become route patterns with every templated segment as ``*``; the
methods of one pattern are gathered into one route. The routes are meant to
go *before* the config's own (the first matching route wins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from proxy.config.models import Config
from proxy.coverage.matching import CoverageMap, Row

PINNED, UNROUTED, NEW_ONLY = "pinned-legacy", "unrouted", "new-only"
_NOTHING = "nothing to draft: every operation is routed, and new has all of legacy's"
_WILD = re.compile(r"[{}*?#]")


def route_pattern(path: str) -> str:
    """``/users/{id}/avatar.{ext}`` -> ``/users/*/*``: a valid route path for the template."""
    segments = path[1:].split("/") if path.startswith("/") else path.split("/")
    return "/" + "/".join("*" if _WILD.search(segment) else segment for segment in segments)


def _free_name(wanted: str, taken: set[str]) -> str:
    name, counter = wanted, 2
    while name in taken:
        name, counter = f"{wanted}-{counter}", counter + 1
    taken.add(name)
    return name


def _routes(rows: Iterable[Row], flag: str) -> list[dict[str, Any]]:
    grouped: dict[str, list[str]] = {}
    for row in rows:
        methods = grouped.setdefault(route_pattern(row.operation.path), [])
        if row.operation.method not in methods:
            methods.append(row.operation.method)
    return [{"path": path, "methods": methods, "flag": flag} for path, methods in grouped.items()]


@dataclass(frozen=True, slots=True)
class Draft:
    flags: dict[str, Any]
    routes: list[dict[str, Any]]
    notes: list[str]
    """One comment line per drafted flag: what it holds."""

    def as_config(self) -> dict[str, Any]:
        return {"flags": self.flags, "routes": self.routes}


def draft_routes(coverage: CoverageMap, config: Config) -> Draft:
    """The flags and routes to merge into ``config``."""
    taken = set(config.flags)
    groups = [
        (PINNED, 0, "operations new lacks, pinned to legacy", _missing(coverage, config)),
        (UNROUTED, 0, "unrouted operations new has: raise when ready", _unrouted(coverage)),
        (NEW_ONLY, 100, "unrouted operations only new has", _new_only(coverage)),
    ]
    draft = Draft({}, [], [])
    for wanted, percent, note, rows in groups:
        if rows:
            name = _free_name(wanted, taken)
            draft.flags[name] = {"percent": percent}
            draft.routes.extend(_routes(rows, name))
            draft.notes.append(f"{name} ({percent} %): {note}")
    return draft


def _missing(coverage: CoverageMap, config: Config) -> list[Row]:
    """Legacy operations new lacks, but not those a route of their own already pins."""
    return [row for row in coverage.rows if row.counterpart is None and not _pinned(row, config)]


def _pinned(row: Row, config: Config) -> bool:
    """Routed by a route for exactly this path (as drafted) to a flag at 0 %."""
    if row.flag is None or row.route != route_pattern(row.operation.path):
        return False
    return config.flags[row.flag].percent == 0


def _unrouted(coverage: CoverageMap) -> list[Row]:
    return [row for row in coverage.rows if row.flag is None and row.counterpart is not None]


def _new_only(coverage: CoverageMap) -> list[Row]:
    return [row for row in coverage.only_in_new if row.flag is None]


def render_draft(draft: Draft, coverage: CoverageMap) -> str:
    """The draft as YAML, after comments saying what it is and where it goes."""
    lines = [
        "# Drafted by `turnout coverage --write-routes` from",
        f"#   legacy: {coverage.legacy.source}",
        f"#   new:    {coverage.new.source}",
        "# Merge it into the config: add the flags, and put the routes BEFORE the",
        "# existing ones (the first matching route wins).",
        *(f"#   {note}" for note in draft.notes or [_NOTHING]),
    ]
    body = yaml.safe_dump(draft.as_config(), sort_keys=False, default_flow_style=None)
    return "\n".join(lines) + "\n" + body
