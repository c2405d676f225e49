"""Route matching: path globs compiled into a segment trie.

A pattern is split on ``/`` into segments; a segment is a literal, ``*`` (exactly
one segment) or ``**`` (zero or more segments, Ant/Spring style, so
``/api/users/**`` also matches ``/api/users``). All patterns go into one trie, so
matching costs one walk over the request's segments instead of one regex per
route. A walk yields the indices of every route whose *path* matches; the first
of them (in file order) whose methods and header also match wins.

Matching is on the request path (query removed) after the client side normalised
it (``proxy.http.paths``: dot segments removed, unreserved escapes decoded, slashes
merged), as Envoy does with ``normalize_path``; other escapes are matched as sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

GLOBSTAR = "**"
STAR = "*"
_PATH_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One route as the matcher sees it: index in file order plus its filters."""

    index: int
    pattern: str
    methods: frozenset[str] | None
    header_name: str | None
    header_value: str | None


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    star: _Node | None = None
    globstar: _Node | None = None
    ends_here: list[int] = field(default_factory=list)

    def child(self, segment: str) -> _Node:
        if segment == GLOBSTAR:
            if self.globstar is None:
                self.globstar = _Node()
            return self.globstar
        if segment == STAR:
            if self.star is None:
                self.star = _Node()
            return self.star
        return self.literal.setdefault(segment, _Node())


def split_path(path: str) -> list[str]:
    """``/a/b`` -> ``["a", "b"]``, ``/`` -> ``[""]``; a trailing slash gives an empty segment."""
    return path[1:].split("/") if path.startswith("/") else path.split("/")


class RouteMatcher:
    """Finds the first route (in file order) matching a method, path and headers."""

    def __init__(self, rules: Sequence[RouteRule]) -> None:
        self._rules = list(rules)
        self._root = _Node()
        for rule in self._rules:
            node = self._root
            for segment in split_path(rule.pattern):
                node = node.child(segment)
            node.ends_here.append(rule.index)
        self._by_index = {rule.index: rule for rule in self._rules}
        self._path_cache: dict[str, tuple[int, ...]] = {}

    def candidates(self, path: str) -> tuple[int, ...]:
        """Indices of routes whose path pattern matches, ascending (file order)."""
        cached = self._path_cache.get(path)
        if cached is not None:
            return cached
        found: set[int] = set()
        _walk(self._root, split_path(path), 0, found)
        result = tuple(sorted(found))
        if len(self._path_cache) >= _PATH_CACHE_SIZE:
            self._path_cache.clear()
        self._path_cache[path] = result
        return result

    def match(self, method: str, path: str, headers: Mapping[str, str]) -> int | None:
        """The index of the first matching route, or None for `unmatched`."""
        for index in self.candidates(path):
            rule = self._by_index[index]
            if rule.methods is not None and method not in rule.methods:
                continue
            if rule.header_name is not None:
                value = headers.get(rule.header_name)
                if value is None or (rule.header_value is not None and value != rule.header_value):
                    continue
            return index
        return None


def _walk(node: _Node, segments: list[str], position: int, found: set[int]) -> None:
    """Collect every route ending reachable from ``node`` consuming ``segments[position:]``."""
    if node.globstar is not None:
        # `**` may swallow zero or more of the remaining segments.
        for start in range(position, len(segments) + 1):
            _walk(node.globstar, segments, start, found)
    if position == len(segments):
        found.update(node.ends_here)
        return
    segment = segments[position]
    child = node.literal.get(segment)
    if child is not None:
        _walk(child, segments, position + 1, found)
    if node.star is not None:
        _walk(node.star, segments, position + 1, found)
