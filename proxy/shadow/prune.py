"""The match fast path: cut the ignored subtrees out of both bodies, compare in C.

Near parity most comparisons find nothing, and walking two documents field by
field in Python to find nothing is the differ's whole cost. So the ignore
patterns that name a part of the body (``body.meta``, ``body.items[*].updatedAt``,
``body.*.etag``) are also compiled to *cuts*: each removes exactly that subtree
from a parsed document, wherever it is. If the two documents are then equal, in
value and in JSON type, no difference can be found and the walk is skipped;
otherwise the differ walks the documents as they came (parsed again: a cut
container would show up cut in a reported example).

Sound by construction: a cut never removes more than the ignore regex skips
(where a pattern's text is ambiguous, e.g. a key that itself contains a dot,
the regex may skip more and the cut less, and the walk decides), and the
normalisers only ever make more values equal, never fewer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

Cut = tuple[str, ...]
"""Path segments below ``body``: a key, ``.*`` (any key) or ``[*]`` (any list index)."""

_SEGMENT = re.compile(r"\.([^.\[]+)|\[\*\]")
# Neither can be a key named in a pattern (those hold no "." and no "[").
_ANY_KEY, _ANY_INDEX = ".*", "[*]"


def body_cuts(patterns: Iterable[str]) -> tuple[Cut, ...]:
    """The cuts of the ignore patterns that name a part of the body (others: none)."""
    cuts = []
    for text in patterns:
        if text.startswith("body"):
            rest = text[4:]
        elif text.startswith("*."):  # a first segment that is any name: body among them
            rest = text[1:]
        else:
            continue
        cut = _segments(rest)
        if cut:  # (the whole body is ``ignored("body")``, checked before any parsing)
            cuts.append(cut)
    return tuple(cuts)


def _segments(rest: str) -> Cut | None:
    segments, at = [], 0
    while at < len(rest):
        found = _SEGMENT.match(rest, at)
        if found is None:
            return None  # not a path this module can follow: no cut, the walk decides
        key, at = found.group(1), found.end()
        if key is None:
            segments.append(_ANY_INDEX)
        elif key == "*" and (at == len(rest) or rest[at] == "."):
            segments.append(_ANY_KEY)  # a whole segment "*" is any key ("*[*]" is not)
        else:
            segments.append(key)
    return tuple(segments)


def cut_ignored(legacy: Any, new: Any, cuts: tuple[Cut, ...]) -> bool:
    """Cut ``cuts`` out of both parsed documents, in place; True when anything was cut."""
    removed = False
    for cut in cuts:
        removed = _cut(legacy, cut, 0) | _cut(new, cut, 0) | removed
    return removed


def same_json(legacy: Any, new: Any) -> bool:
    """Equal, values and JSON types alike (``true`` is not ``1``; key order does not
    count). False means "not known to be equal": walk them."""
    if legacy != new:
        return False
    try:
        return orjson.dumps(legacy, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
            new, option=orjson.OPT_SORT_KEYS
        )
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: let the walk decide
        return False


def _cut(value: Any, cut: Cut, at: int) -> bool:
    segment, last = cut[at], at == len(cut) - 1
    removed = False
    if segment == _ANY_INDEX:
        if isinstance(value, list):
            if last:
                removed = bool(value)
                value.clear()
            else:
                for item in value:
                    removed = _cut(item, cut, at + 1) | removed
    elif isinstance(value, dict):
        if segment == _ANY_KEY:
            if last:
                removed = bool(value)
                value.clear()
            else:
                for item in value.values():
                    removed = _cut(item, cut, at + 1) | removed
        elif last:
            removed = value.pop(segment, _ABSENT) is not _ABSENT
        elif segment in value:
            removed = _cut(value[segment], cut, at + 1)
    return removed


_ABSENT = object()
