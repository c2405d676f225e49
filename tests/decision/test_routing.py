"""Route matching: globs, first match in file order, methods and header filters."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.decision.routing import RouteMatcher, RouteRule


def rule(
    index: int,
    pattern: str,
    methods: set[str] | None = None,
    header: tuple[str, str | None] | None = None,
) -> RouteRule:
    return RouteRule(
        index=index,
        pattern=pattern,
        methods=frozenset(methods) if methods else None,
        header_name=header[0] if header else None,
        header_value=header[1] if header else None,
    )


def test_exact_star_and_globstar() -> None:
    matcher = RouteMatcher(
        [rule(0, "/health"), rule(1, "/api/users/*"), rule(2, "/api/**"), rule(3, "/**")]
    )
    assert matcher.match("GET", "/health", {}) == 0
    assert matcher.match("GET", "/api/users/42", {}) == 1
    assert matcher.match("GET", "/api/users/42/orders", {}) == 2
    assert matcher.match("GET", "/api", {}) == 2  # `**` matches zero segments too
    assert matcher.match("GET", "/other/x", {}) == 3


def test_star_is_exactly_one_segment() -> None:
    matcher = RouteMatcher([rule(0, "/a/*/c")])
    assert matcher.match("GET", "/a/b/c", {}) == 0
    assert matcher.match("GET", "/a/c", {}) is None
    assert matcher.match("GET", "/a/b/x/c", {}) is None


def test_first_match_in_file_order_wins_even_when_less_specific() -> None:
    matcher = RouteMatcher([rule(0, "/api/**"), rule(1, "/api/users/*")])
    assert matcher.match("GET", "/api/users/1", {}) == 0


def test_methods_and_header_filters_fall_through_to_later_routes() -> None:
    matcher = RouteMatcher(
        [
            rule(0, "/api/users/**", methods={"POST"}),
            rule(1, "/api/users/**", header=("x-beta", "1")),
            rule(2, "/api/users/**", header=("x-any", None)),
            rule(3, "/api/users/**"),
        ]
    )
    assert matcher.match("POST", "/api/users/1", {}) == 0
    assert matcher.match("GET", "/api/users/1", {"x-beta": "1"}) == 1
    assert matcher.match("GET", "/api/users/1", {"x-beta": "2"}) == 3
    assert matcher.match("GET", "/api/users/1", {"x-any": ""}) == 2
    assert matcher.match("GET", "/api/users/1", {}) == 3


def test_unmatched_and_trailing_slash() -> None:
    matcher = RouteMatcher([rule(0, "/api/users"), rule(1, "/")])
    assert matcher.match("GET", "/api/users/", {}) is None
    assert matcher.match("GET", "/", {}) == 1
    assert matcher.match("GET", "/nope", {}) is None


def _regex(pattern: str) -> re.Pattern[str]:
    """A reference implementation: one regex per route."""
    parts = pattern[1:].split("/")
    out = ""
    for part in parts:
        if part == "**":
            out += "(?:/[^/]*)*"
        elif part == "*":
            out += "/[^/]*"
        else:
            out += "/" + re.escape(part)
    return re.compile(out + r"\Z")


segment = st.sampled_from(["a", "b", "c", "*", "**"])
path_segment = st.sampled_from(["a", "b", "c", "d", ""])


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.lists(segment, min_size=1, max_size=4), min_size=1, max_size=8),
    path=st.lists(path_segment, min_size=1, max_size=5),
)
def test_trie_agrees_with_trying_every_regex_in_turn(
    patterns: list[list[str]], path: list[str]
) -> None:
    texts = ["/" + "/".join(p) for p in patterns]
    matcher = RouteMatcher([rule(i, t) for i, t in enumerate(texts)])
    request_path = "/" + "/".join(path)
    expected = next((i for i, t in enumerate(texts) if _regex(t).match(request_path)), None)
    assert matcher.match("GET", request_path, {}) == expected


def test_hundreds_of_routes_match_correctly() -> None:
    rules = [rule(i, f"/svc{i}/items/*") for i in range(500)] + [rule(500, "/**")]
    matcher = RouteMatcher(rules)
    assert matcher.match("GET", "/svc321/items/9", {}) == 321
    assert matcher.match("GET", "/svc321/other", {}) == 500
