"""A structural JSON diff with field paths, ignore patterns and noise normalisers.

Paths read like ``body.items[3].price``. A small focused differ rather than a
general library: it needs exactly three things no general one gives together —
our path syntax (the one ``compare.ignore`` is written in), normalisers for
the noise of real rewrites (uuids, timestamp formats, list order, float
rounding, snake_case against camelCase keys), and a hard cap on the work and
the output per comparison. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy.shadow.prune import Cut

MAX_DIFFS = 50
"""Differences kept per comparison; a completely different body stops there."""
MAX_SEEN_PATHS = 4096
"""Field paths whose ignore verdict is remembered, per flag."""

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_INDEX = re.compile(r"\[\d+\]")
_MISSING = object()


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per shadow
class FieldDiff:
    """One differing field: its path and the two values (``None`` for a missing side)."""

    path: str
    legacy: Any
    new: Any

    @property
    def pattern(self) -> str:
        """The path with list indices generalised (``items[3]`` → ``items[*]``), the
        unit that noise and the per-route report count."""
        return _INDEX.sub("[*]", self.path)


@dataclass(frozen=True, slots=True)
class DiffRules:
    """How two JSON documents are compared (compiled from ``shadow.compare``)."""

    ignore: re.Pattern[str] | None = None  # every ignore pattern in one regex
    cuts: tuple[Cut, ...] = ()  # the body's ignored subtrees, for the match fast path
    uuid: bool = False
    iso_timestamp: bool = False
    unordered_lists: bool = False
    case_insensitive_keys: bool = False
    float_tolerance: float | None = None

    # Answers of one API repeat the same paths: each is matched against the ignore
    # regex once (a match costs ten dict lookups). Bounded; beyond, it just matches.
    seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def ignored(self, path: str) -> bool:
        found = self.seen.get(path)
        if found is None:
            found = self.ignore is not None and self.ignore.match(path) is not None
            if len(self.seen) < MAX_SEEN_PATHS:
                self.seen[path] = found
        return found


def ignore_pattern(text: str) -> re.Pattern[str]:
    """``body.items[*].updatedAt`` → a regex for that path and everything below it.

    ``[*]`` stands for any list index and a ``*`` segment for any key.
    """
    return re.compile(_ignore_regex(text))


def ignore_patterns(texts: list[str]) -> re.Pattern[str] | None:
    """All of ``texts`` as one regex (one match per field, however many patterns)."""
    if not texts:
        return None
    return re.compile("|".join(f"(?:{_ignore_regex(text)})" for text in texts))


def _ignore_regex(text: str) -> str:
    parts = re.split(r"(\[\*\]|(?<=\.)\*(?=\.|$)|^\*(?=\.))", text)
    regex = "".join(
        r"\[\d+\]" if part == "[*]" else r"[^.\[]+" if part == "*" else re.escape(part)
        for part in parts
    )
    return regex + r"(?=$|[.\[])"


def diff_json(legacy: Any, new: Any, rules: DiffRules, path: str = "body") -> list[FieldDiff]:
    """Every differing field of two parsed JSON values, at most ``MAX_DIFFS``."""
    out: list[FieldDiff] = []
    _diff(legacy, new, path, rules, out)
    return out


def _diff(legacy: Any, new: Any, path: str, rules: DiffRules, out: list[FieldDiff]) -> None:
    # The ignore patterns are matched only where it matters: at a container (an
    # ignored subtree is not walked) and at a scalar that differs (most are equal).
    if len(out) >= MAX_DIFFS:
        return
    if isinstance(legacy, dict) and isinstance(new, dict):
        if not _same_tree(legacy, new) and not rules.ignored(path):
            _diff_objects(legacy, new, path, rules, out)
    elif isinstance(legacy, list) and isinstance(new, list):
        if not _same_tree(legacy, new) and not rules.ignored(path):
            _diff_lists(legacy, new, path, rules, out)
    elif not _same_scalar(legacy, new, rules) and not rules.ignored(path):
        out.append(FieldDiff(path, _shown(legacy), _shown(new)))


def _equal_scalars(legacy: Any, new: Any) -> bool:
    """Equal values of one scalar type (``1`` and ``true`` are not: JSON tells them
    apart); the common case, skipped before any path is built."""
    return type(legacy) is type(new) and type(legacy) in _SCALARS and legacy == new


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _same_tree(legacy: Any, new: Any) -> bool:
    """Two containers equal all the way down, in value and in JSON type: Python's ``==``
    (in C) first, then the two serialised, which tells ``true`` from ``1``. Most of an
    answer is equal, and is not walked field by field."""
    if legacy != new:
        return False
    try:
        return orjson.dumps(legacy) == orjson.dumps(new)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: walk it instead
        return False


def _diff_objects(
    legacy: dict[str, Any], new: dict[str, Any], path: str, rules: DiffRules, out: list[FieldDiff]
) -> None:
    if rules.case_insensitive_keys and not (_collides(legacy) or _collides(new)):
        _diff_folded_objects(legacy, new, path, rules, out)
        return  # (two keys of one object that fold alike are compared as written)
    for key, value in legacy.items():
        if key in new:
            theirs = new[key]
            if not _equal_scalars(value, theirs):
                _diff(value, theirs, f"{path}.{key}", rules, out)
        else:
            _one_sided(f"{path}.{key}", _shown(value), None, rules, out)
    for key, theirs in new.items():
        if key not in legacy:
            _one_sided(f"{path}.{key}", None, _shown(theirs), rules, out)


def _diff_folded_objects(
    legacy: dict[str, Any], new: dict[str, Any], path: str, rules: DiffRules, out: list[FieldDiff]
) -> None:
    """``_diff_objects`` with ``created_at``, ``createdAt`` and ``CreatedAt`` as one key."""
    new_by_key = {_fold_key(key): key for key in new}
    seen: set[str] = set()
    for key, value in legacy.items():
        folded = _fold_key(key)
        seen.add(folded)
        other = new_by_key.get(folded)
        if other is None:
            _one_sided(f"{path}.{key}", _shown(value), None, rules, out)
        elif not _equal_scalars(value, new[other]):
            _diff(value, new[other], f"{path}.{key}", rules, out)
    for folded, key in new_by_key.items():
        if folded not in seen:
            _one_sided(f"{path}.{key}", None, _shown(new[key]), rules, out)


def _one_sided(
    path: str, legacy: Any, new: Any, rules: DiffRules, out: list[FieldDiff]
) -> None:
    """A field only one side has (``None`` for the side without it)."""
    if not rules.ignored(path) and len(out) < MAX_DIFFS:
        out.append(FieldDiff(path, legacy, new))


def _diff_lists(
    legacy: list[Any], new: list[Any], path: str, rules: DiffRules, out: list[FieldDiff]
) -> None:
    if rules.unordered_lists:
        legacy, new = _canonical_order(legacy, rules), _canonical_order(new, rules)
    for index, (ours, theirs) in enumerate(zip(legacy, new, strict=False)):
        if not _equal_scalars(ours, theirs):
            _diff(ours, theirs, f"{path}[{index}]", rules, out)
    for index in range(len(new), len(legacy)):
        _one_sided(f"{path}[{index}]", _shown(legacy[index]), None, rules, out)
    for index in range(len(legacy), len(new)):
        _one_sided(f"{path}[{index}]", None, _shown(new[index]), rules, out)


def _canonical_order(items: list[Any], rules: DiffRules) -> list[Any]:
    """Sort a list by each element's normalised JSON, so that order does not count."""
    return sorted(items, key=lambda item: _canonical(_normalised(item, rules)))


def _canonical(value: Any) -> str:
    # The standard library's encoder: orjson refuses integers beyond 64 bits.
    return json.dumps(value, sort_keys=True, default=str)


def _normalised(value: Any, rules: DiffRules) -> Any:
    if isinstance(value, dict):
        fold = _fold_key if rules.case_insensitive_keys else _same_key
        return {fold(k): _normalised(v, rules) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_normalised(v, rules) for v in value]
    if isinstance(value, str):
        return _normalised_text(value, rules)
    return value


def _same_scalar(legacy: Any, new: Any, rules: DiffRules) -> bool:
    if legacy is new or (type(legacy) is type(new) and legacy == new):
        return True
    if type(legacy) is str and type(new) is str:
        return (rules.uuid or rules.iso_timestamp) and (
            _normalised_text(legacy, rules) == _normalised_text(new, rules)
        )
    if _is_number(legacy) and _is_number(new):
        tolerance = rules.float_tolerance
        if tolerance is None:
            return bool(legacy == new)
        return math.isclose(legacy, new, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(legacy, str) and isinstance(new, str):
        return _normalised_text(legacy, rules) == _normalised_text(new, rules)
    return False


def _normalised_text(text: str, rules: DiffRules) -> str:
    if rules.uuid and _UUID.fullmatch(text):
        return "<uuid>"
    if rules.iso_timestamp and _ISO.fullmatch(text):
        return canonical_timestamp(text)
    return text


def canonical_timestamp(text: str) -> str:
    """An ISO 8601 timestamp in UTC to the second: ``Z`` and ``+00:00`` alike, and the
    fractional seconds (which rewrites round differently) dropped. Unparsable text
    is returned as it is."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat() + "Z"


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBERS) and not isinstance(value, bool)


_NUMBERS = (int, float)  # a tuple: ``int | float`` would build a union per call


def _fold_key(key: str) -> str:
    """``created_at``, ``createdAt`` and ``CreatedAt`` are one key."""
    return key.replace("_", "").replace("-", "").lower()


def _collides(value: dict[str, Any]) -> bool:
    return len({_fold_key(key) for key in value}) < len(value)


def _same_key(key: str) -> str:
    return key


def _shown(value: Any) -> Any:
    """A value as the report shows it: containers summarised, long text cut."""
    if isinstance(value, dict):
        return f"<object with {len(value)} keys>"
    if isinstance(value, list):
        return f"<list of {len(value)}>"
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    return value
