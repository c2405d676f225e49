"""The request target as the proxy routes and forwards it: normalised once, pure.

Routing on one spelling of a path while the backend resolves another lets a
request pick its route: ``/public/../admin/x`` would match ``/public/**`` and be
served as ``/admin/x``. So the target is normalised before matching and the
backend receives the normalised form: the route that decided is the route that
serves. This is what Envoy does with ``normalize_path: true`` (RFC 3986 §6.2.2),
with these choices (docs/request-safety.md):

- dot segments are removed (RFC 3986 §5.2.4), ``%2e``/``%2E`` counting as dots;
  a path that climbs above the root is refused, where RFC 3986 (and Envoy)
  would stop at the root: a client has no reason to climb out;
- percent-escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``) are decoded,
  so ``/%61dmin`` cannot slip past an ``/admin/**`` route; other escapes are kept,
  with upper-case hex: ``%2F`` stays an escape and never becomes a separator;
  a malformed escape or an encoded NUL is refused;
- runs of ``/`` are merged (Envoy's separate ``merge_slashes``, on here): the
  route patterns cannot name an empty segment, and backends disagree about them;
- only origin-form targets are served (``/path?query``): no absolute-form, no
  ``*``, no fragment. The query is kept as it came.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class UnsafePath(ValueError):
    """A request target the proxy will not route (answered with 400)."""


def normalize_target(target: str) -> str:
    """``path[?query]`` with the path normalised; raises ``UnsafePath``.

    Already-normal paths (no ``%``, ``/.`` or ``//``: nearly every request) are
    returned as they are, without allocating.
    """
    if not target.startswith("/"):
        raise UnsafePath("the request target must be a path (origin-form)")
    if "#" in target:
        raise UnsafePath("a fragment is not allowed in the request target")
    query_at = target.find("?")
    path = target if query_at < 0 else target[:query_at]
    if "%" not in path and "/." not in path and "//" not in path:
        return target
    normal = normalize_path(path)
    return normal if query_at < 0 else normal + target[query_at:]


def normalize_path(path: str) -> str:
    """An absolute path (starting with ``/``) in normal form; raises ``UnsafePath``."""
    if "%" in path:
        path = _decode_unreserved(path)
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if not kept:
                raise UnsafePath("the path climbs above the root")
            kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    if not kept:
        return "/"
    trailing = segments[-1] in ("", ".", "..")
    return "/" + "/".join(kept) + ("/" if trailing else "")


def _decode_unreserved(path: str) -> str:
    if _BAD_ESCAPE.search(path):
        raise UnsafePath("malformed or NUL percent-escape in the path")
    return _ESCAPE.sub(_decode_escape, path)


def _decode_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()
