"""Path normalisation (proxy.http.paths), pure: a table of cases and hypothesis
properties (idempotent, always absolute, never above the root)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.paths import UnsafePath, normalize_path, normalize_target

CASES = [
    ("/", "/"),
    ("/a/b", "/a/b"),
    ("/a/b/", "/a/b/"),
    ("/a/./b", "/a/b"),
    ("/a/../b", "/b"),
    ("/public/../admin/x", "/admin/x"),
    ("/a/b/..", "/a/"),
    ("/a/b/.", "/a/b/"),
    ("/a/..", "/"),
    ("/.", "/"),
    ("/./", "/"),
    ("/a/b/../../c", "/c"),
    ("/public/%2e%2e/admin/x", "/admin/x"),
    ("/public/%2E%2E/admin/x", "/admin/x"),
    ("/public/.%2e/admin", "/admin"),
    ("/a/%2e/b", "/a/b"),
    ("/%61dmin/x", "/admin/x"),
    ("/a%2Fb", "/a%2Fb"),
    ("/a%2fb", "/a%2Fb"),
    ("/a%2f..%2fb", "/a%2F..%2Fb"),
    ("/%7euser", "/~user"),
    ("/a%20b", "/a%20b"),
    ("/%252e%252e/x", "/%252e%252e/x"),
    ("//a//b", "/a/b"),
    ("/a//../b", "/b"),
    ("/a/b//", "/a/b/"),
    ("/.well-known/x", "/.well-known/x"),
    ("/a/...", "/a/..."),
    ("/a/..b/c", "/a/..b/c"),
    ("/a/.b", "/a/.b"),
]


@pytest.mark.parametrize(("raw", "normal"), CASES)
def test_normalize_path(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize(
    "raw", ["/..", "/../x", "/a/../../x", "/%2e%2e/x", "/a/%2E%2E/%2e%2e", "/./../a"]
)
def test_a_path_above_the_root_is_refused(raw: str) -> None:
    with pytest.raises(UnsafePath, match="above the root"):
        normalize_path(raw)


@pytest.mark.parametrize("raw", ["/a%", "/a%2", "/a%zz", "/a%%41", "/a%00b"])
def test_malformed_or_nul_escapes_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePath, match="percent-escape"):
        normalize_path(raw)


@pytest.mark.parametrize(
    ("target", "normal"),
    [
        ("/a/./b?x=/../y", "/a/b?x=/../y"),
        ("/a?%2e%2e", "/a?%2e%2e"),
        ("/a/../b?", "/b?"),
        ("/plain?q=1", "/plain?q=1"),
    ],
)
def test_the_query_is_kept_as_it_came(target: str, normal: str) -> None:
    assert normalize_target(target) == normal


def test_an_already_normal_target_is_returned_as_is() -> None:
    target = "/api/users/42?expand=1"
    assert normalize_target(target) is target


@pytest.mark.parametrize(
    "target", ["*", "http://evil.example/admin", "evil.example:443", "", "/a#frag", "/a?b#c"]
)
def test_only_origin_form_targets_are_served(target: str) -> None:
    with pytest.raises(UnsafePath):
        normalize_target(target)


SEGMENT = st.one_of(
    st.sampled_from(["", ".", "..", "%2e", "%2E%2e", ".%2E", "a", "%61", "%2F", "b.c", "..."]),
    st.text(alphabet="abz09-._~%2eEfF", min_size=1, max_size=6),
)
PATHS = st.lists(SEGMENT, max_size=12).map(lambda segments: "/" + "/".join(segments))


def _normal_or_none(path: str) -> str | None:
    try:
        return normalize_path(path)
    except UnsafePath:
        return None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(PATHS)
def test_normalisation_is_idempotent_and_absolute(path: str) -> None:
    normal = _normal_or_none(path)
    if normal is None:
        return
    assert normal.startswith("/")
    assert normalize_path(normal) == normal
    assert "//" not in normal
    assert not {".", ".."} & set(normal.split("/"))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(PATHS)
def test_normalisation_never_climbs_above_the_root(path: str) -> None:
    """One ``..`` more than the normal form's depth always climbs out: refused."""
    normal = _normal_or_none(path)
    if normal is None:
        return
    depth = len([segment for segment in normal.split("/") if segment])
    with pytest.raises(UnsafePath):
        normalize_path(path + "/.." * (depth + 1))
    assert normalize_path(path + "/.." * depth) == "/"
