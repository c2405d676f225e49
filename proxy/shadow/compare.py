"""Compare two answers to the same request: status, selected headers, body.

Pure: the shell (``proxy.shadow.mirror``) hands over what it observed of each
backend's answer, and gets the differing fields back. The orientation is
always legacy against new, whichever side served the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from proxy.config.flags import Compare
from proxy.shadow.diff import DiffRules, FieldDiff, diff_json, ignore_patterns
from proxy.shadow.prune import body_cuts, cut_ignored, same_json


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per shadow
class Observed:
    """One backend's answer as the comparison sees it (the body possibly cut at a cap)."""

    status: int
    headers: dict[str, str]  # lower-case names; only the compared ones matter
    body: bytes


@dataclass(frozen=True, slots=True)
class CompareRules:
    """``shadow.compare`` compiled once per config."""

    diff: DiffRules = field(default_factory=DiffRules)
    headers: tuple[str, ...] = ("content-type",)
    equivalent_status: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, config: Compare) -> CompareRules:
        normalize = set(config.normalize)
        return cls(
            diff=DiffRules(
                ignore=ignore_patterns(config.ignore),
                cuts=body_cuts(config.ignore),
                uuid="uuid" in normalize,
                iso_timestamp="iso_timestamp" in normalize,
                unordered_lists="unordered_lists" in normalize,
                case_insensitive_keys="case_insensitive_keys" in normalize,
                float_tolerance=config.float_tolerance if "float_tolerance" in normalize else None,
            ),
            headers=tuple(config.headers),
            equivalent_status=_equivalence(config.same_status),
        )


def _equivalence(pairs: Iterable[tuple[int, int]]) -> frozenset[tuple[int, int]]:
    """All ordered pairs of statuses declared equal, closed under transitivity."""
    groups: list[set[int]] = []
    for a, b in pairs:
        joined = {a, b}
        for group in [g for g in groups if g & joined]:
            joined |= group
            groups.remove(group)
        groups.append(joined)
    return frozenset((x, y) for group in groups for x in group for y in group)


def compare(legacy: Observed, new: Observed, rules: CompareRules) -> list[FieldDiff]:
    """The fields in which the two answers differ (empty: they match)."""
    diffs: list[FieldDiff] = []
    same_status = legacy.status == new.status or (
        (legacy.status, new.status) in rules.equivalent_status
    )
    if not same_status and not rules.diff.ignored("status"):
        diffs.append(FieldDiff("status", legacy.status, new.status))
    for name in rules.headers:
        ours, theirs = legacy.headers.get(name), new.headers.get(name)
        if ours == theirs:
            continue
        if name == "content-type":
            ours, theirs = _media_type(ours), _media_type(theirs)
        path = f"headers.{name}"
        if ours != theirs and not rules.diff.ignored(path):
            diffs.append(FieldDiff(path, ours, theirs))
    if legacy.status == new.status:
        # Bodies of different statuses, even ones declared equal (FastAPI's 422 and
        # NestJS's 400), are each framework's own error wording: not diffed.
        diffs.extend(_compare_bodies(legacy, new, rules))
    return diffs


def _compare_bodies(legacy: Observed, new: Observed, rules: CompareRules) -> list[FieldDiff]:
    if legacy.body == new.body or rules.diff.ignored("body"):
        return []
    parsed = _json(legacy), _json(new)
    if parsed[0] is not _NOT_JSON and parsed[1] is not _NOT_JSON:
        ours, theirs = parsed
        cut = cut_ignored(ours, theirs, rules.diff.cuts)
        if same_json(ours, theirs):
            return []  # the common case near parity, found without a walk
        if cut:  # walked as they came: a cut container would show up cut in an example
            ours, theirs = orjson.loads(legacy.body), orjson.loads(new.body)
        return diff_json(ours, theirs, rules.diff)
    return [FieldDiff("body", f"<{len(legacy.body)} bytes>", f"<{len(new.body)} bytes>")]


_NOT_JSON = object()


def _json(answer: Observed) -> object:
    if not answer.body or "json" not in answer.headers.get("content-type", "json"):
        return _NOT_JSON
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _media_type(value: str | None) -> str | None:
    """``application/json; charset=utf-8`` → ``application/json`` (the parameters of a
    content type are framework noise: FastAPI and NestJS differ on charset)."""
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()
