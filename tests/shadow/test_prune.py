"""The match fast path (``proxy.shadow.prune``) against the differ's own walk."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.flags import Compare
from proxy.shadow.compare import CompareRules, Observed, compare
from proxy.shadow.diff import DiffRules, FieldDiff, _diff, ignore_patterns
from proxy.shadow.prune import body_cuts, cut_ignored, same_json

KEYS = st.sampled_from(["a", "b", "id", "a.b", "x[1", "*", "*x", "ax"])
SCALARS = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from([1.0, 0.5, "s", "t"])
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)
SEGMENTS = st.sampled_from([".a", ".b", ".id", ".*", "[*]", ".a.b", ".*x", "x"])
PATTERNS = st.builds(
    lambda head, tail: head + "".join(tail),
    st.sampled_from(["body", "*"]),
    st.lists(SEGMENTS, min_size=1, max_size=3),
)


def rules_for(patterns: list[str], **normalise: bool) -> DiffRules:
    return DiffRules(ignore=ignore_patterns(patterns), cuts=body_cuts(patterns), **normalise)


def walked(legacy: Any, new: Any, rules: DiffRules) -> list[FieldDiff]:
    """The differ's walk alone, without the fast path."""
    out: list[FieldDiff] = []
    _diff(legacy, new, "body", rules, out)
    return out


@settings(max_examples=600, deadline=None)
@given(
    DOCUMENTS,
    DOCUMENTS,
    st.lists(PATTERNS, max_size=3),
    st.booleans(),
    st.booleans(),
)
def test_the_fast_path_finds_what_the_walk_finds(
    legacy: Any, new: Any, patterns: list[str], unordered: bool, folded: bool
) -> None:
    rules = rules_for(patterns, unordered_lists=unordered, case_insensitive_keys=folded)
    found = walked(copy.deepcopy(legacy), copy.deepcopy(new), rules)
    cut_legacy, cut_new = copy.deepcopy(legacy), copy.deepcopy(new)
    if not cut_ignored(cut_legacy, cut_new, rules.cuts):
        assert (cut_legacy, cut_new) == (legacy, new)  # untouched: walked as they are
    if same_json(cut_legacy, cut_new):
        assert found == []  # never a match the walk would not confirm


def test_a_match_found_by_cutting_and_a_mismatch_walked_as_it_came() -> None:
    rules = CompareRules.from_config(Compare(ignore=["body.items[*].updatedAt"]))
    page = {"items": [{"id": 1, "updatedAt": "t1"}], "total": 1}
    same = {"total": 1, "items": [{"updatedAt": "t2", "id": 1}]}
    other = {"total": 1, "items": [{"id": 2}]}
    assert compare(answer(page), answer(same), rules) == []
    assert compare(answer(page), answer(other), rules) == [FieldDiff("body.items[0].id", 1, 2)]
    # A container reported whole shows what it held, not what was left of it once cut.
    rules = CompareRules.from_config(Compare(ignore=["body.meta.generatedAt"]))
    assert compare(answer({"meta": None}), answer({"meta": {"generatedAt": "t"}}), rules) == [
        FieldDiff("body.meta", None, "<object with 1 keys>")
    ]


def answer(body: Any) -> Observed:
    return Observed(200, {"content-type": "application/json"}, orjson.dumps(body))


@given(DOCUMENTS)
def test_a_document_is_the_same_json_as_itself(document: Any) -> None:
    assert same_json(document, copy.deepcopy(document))


def test_cuts_follow_keys_wildcards_and_list_indices() -> None:
    assert body_cuts(["body.meta.generatedAt", "body.items[*].updatedAt", "*.etag"]) == (
        ("meta", "generatedAt"),
        ("items", "[*]", "updatedAt"),
        ("etag",),
    )
    assert body_cuts(["body.*.etag", "body.*[*]"]) == ((".*", "etag"), ("*", "[*]"))
    assert body_cuts(["headers.date", "status", "body", "bodyx.y"]) == ()
    legacy = {"items": [{"id": 1, "updatedAt": "t1"}, {"id": 2, "updatedAt": "t2"}], "v": 1}
    new = {"v": 1, "items": [{"id": 1, "updatedAt": "u1"}, {"id": 2}]}  # key order differs
    assert cut_ignored(legacy, new, body_cuts(["body.items[*].updatedAt"]))
    assert same_json(legacy, new)
    assert not cut_ignored(legacy, new, body_cuts(["body.items[*].updatedAt"]))  # gone now
    assert not same_json({"ok": True}, {"ok": 1})  # JSON types count
    assert not same_json({"n": 2**70}, {"n": 2**70})  # beyond orjson: walk it
