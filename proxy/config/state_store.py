"""The ``state_store`` URL: where a fleet of replicas keeps its shared runtime state.

``redis://[:password@]host[:port][/db][?name=deployment]`` (``rediss://`` for TLS).
``name`` namespaces the keys, so that two deployments can share one Redis; it is
Turnout's own parameter and is taken off before the URL is handed to redis-py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

DEFAULT_NAME = "turnout"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class StoreAddress:
    url: str
    """For redis-py: the given URL without ``name``."""
    name: str
    shown: str
    """For logs and error messages: without the password."""

    def key(self, what: str) -> str:
        """``turnout:{name}:what``; the braces make ``name`` a Redis Cluster hash tag,
        so every key of a deployment lands on one slot (a Lua script may touch them all)."""
        return f"turnout:{{{self.name}}}:{what}"


def parse_state_store(text: str) -> StoreAddress:
    """A validated ``StoreAddress``; ``ValueError`` says what is wrong with ``text``."""
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"expected redis://HOST:PORT/DB (or rediss://), got {text!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port of {text!r} is not a number in 0..65535") from None
    if not parts.hostname:
        raise ValueError(f"no host in {text!r} (expected redis://HOST:PORT/DB)")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"the database of {text!r} must be a number, got {database!r}")
    name = DEFAULT_NAME
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "name":
            raise ValueError(f"unknown parameter {key!r} in {text!r} (only ?name=DEPLOYMENT)")
        if not _NAME.fullmatch(value):
            raise ValueError(f"name must be letters, digits, '_', '.', '-', got {value!r}")
        name = value
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc += f":{port}" if port is not None else ""
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return StoreAddress(url=url, name=name, shown=f"{shown}?name={name}")
