"""Legacy operations against new ones, and the route and flag serving each (pure).

Two operations are the same when their methods and full paths match with
parameter names ignored (``/users/{user_id}`` = ``/users/{id}``). Which route
serves an operation is Turnout's own route matcher, compiled from the config
as the proxy compiles it, asked about a concrete path made from the template
(every ``{param}`` replaced by :data:`PLACEHOLDER`) with the operation's
method and no headers: a route that needs a header does not serve an operation
in general. An operation no route matches is ``unmatched`` (flag ``none``) and
always goes to legacy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.config.models import UNMATCHED_ROUTE, Config
from proxy.coverage.operations import Document, Operation
from proxy.decision.table import UNMATCHED_FLAG, compile_table
from proxy.observe.stats import Stats

PLACEHOLDER = "1"
"""What stands for a path parameter when asking the route matcher."""
_PARAMETER = re.compile(r"\{[^/{}]*\}")

RouteFinder = Callable[[str, str], tuple[str, str | None]]
"""(method, concrete path) -> (route label, flag name or None when unmatched)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One operation of one document, with the route and flag that serve it."""

    operation: Operation
    route: str
    flag: str | None
    counterpart: Operation | None
    """The other document's operation with the same key, or None when it lacks it."""

    @property
    def flag_name(self) -> str:
        return self.flag if self.flag is not None else UNMATCHED_FLAG


@dataclass(frozen=True, slots=True)
class CoverageMap:
    legacy: Document
    new: Document
    rows: tuple[Row, ...]
    """Every legacy operation, in the legacy document's order."""
    only_in_new: tuple[Row, ...]
    """New operations legacy does not have."""


def concrete_path(template: str) -> str:
    """``/users/{id}/posts`` -> ``/users/1/posts``: a path the route matcher can take."""
    return _PARAMETER.sub(PLACEHOLDER, template)


def route_finder(config: Config) -> RouteFinder:
    """The proxy's route matcher for ``config``, compiled as the proxy compiles it."""
    table = compile_table(config, "", Stats(), (None, None))

    def find(method: str, path: str) -> tuple[str, str | None]:
        index = table.matcher.match(method, path, {})
        if index is None:
            return UNMATCHED_ROUTE, None
        route = config.routes[index]
        return route.label, route.flag

    return find


def match_documents(legacy: Document, new: Document, find: RouteFinder) -> CoverageMap:
    """Pair the operations of the two documents and route each of them."""
    new_by_key = _by_key(new.operations)
    legacy_by_key = _by_key(legacy.operations)
    rows = tuple(_row(op, new_by_key.get(op.key), find) for op in legacy.operations)
    only_new = tuple(_row(op, None, find) for op in new.operations if op.key not in legacy_by_key)
    return CoverageMap(legacy, new, rows, only_new)


def coverage_map(legacy: Document, new: Document, config: Config) -> CoverageMap:
    """The migration map of two loaded documents under ``config``'s routes."""
    return match_documents(legacy, new, route_finder(config))


def _by_key(operations: tuple[Operation, ...]) -> Mapping[tuple[str, str], Operation]:
    found: dict[tuple[str, str], Operation] = {}
    for op in operations:
        found.setdefault(op.key, op)
    return found


def _row(op: Operation, counterpart: Operation | None, find: RouteFinder) -> Row:
    route, flag = find(op.method, concrete_path(op.path))
    return Row(op, route, flag, counterpart)
