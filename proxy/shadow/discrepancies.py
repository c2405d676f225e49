"""The discrepancy log: one JSON line per mismatch, secrets redacted, size-bounded.

Rotation is the standard library's ``RotatingFileHandler`` (``max_bytes`` per
file, ``backups`` old files kept). Redaction replaces the values of configured
JSON fields, and every occurrence of the request's and the answers'
Authorization, Cookie and Set-Cookie values, wherever they appear in the line
(a backend echoing a header into its body included).
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterable
from typing import Any

import orjson

from proxy.shadow.diff import FieldDiff

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({b"authorization", b"cookie", b"set-cookie", b"proxy-authorization"})
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
BODY_SHOWN = 2048


class DiscrepancyLog:
    """Writes mismatch records to ``path``; with ``path=None`` it writes nothing."""

    def __init__(self, path: str | None, max_bytes: int = MAX_BYTES, backups: int = BACKUPS):
        self.path = path
        self._logger: logging.Logger | None = None
        self._handler: logging.Handler | None = None
        if path is not None:
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger = logging.getLogger(f"turnout.discrepancies.{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            logger.addHandler(handler)
            self._logger, self._handler = logger, handler

    def write(self, record: dict[str, Any], secrets: Iterable[str], fields: Iterable[str]) -> None:
        if self._logger is None:
            return
        line = orjson.dumps(redact_fields(record, frozenset(fields)), default=str).decode()
        for secret in secrets:
            if secret:
                line = line.replace(orjson.dumps(secret).decode()[1:-1], REDACTED)
        self._logger.info(line)

    def close(self) -> None:
        if self._logger is not None and self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler.close()
            self._logger = self._handler = None


def redact_fields(value: Any, fields: frozenset[str]) -> Any:
    """``value`` with the values of keys named in ``fields`` replaced, at any depth."""
    if not fields:
        return value
    if isinstance(value, dict):
        return {k: REDACTED if k in fields else redact_fields(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_fields(item, fields) for item in value]
    return value


def redact_diff(diff: FieldDiff, noise: bool, fields: frozenset[str]) -> dict[str, Any]:
    """A field difference for the log; both values hidden when the field is redacted."""
    name = diff.path.rsplit(".", 1)[-1].split("[", 1)[0]
    hidden = name in fields
    return {
        "path": diff.path,
        "legacy": REDACTED if hidden else diff.legacy,
        "new": REDACTED if hidden else diff.new,
        "noise": noise,
    }


def secret_values(*header_lists: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The values of secret-bearing headers (and each cookie's value on its own)."""
    found: list[str] = []
    for headers in header_lists:
        for name, value in headers:
            if name.lower() in SECRET_HEADERS:
                text = value.decode("latin-1")
                found.append(text)
                found.extend(_cookie_values(text))
    return sorted(set(found), key=len, reverse=True)  # longest first: no partial leftovers


def _cookie_values(text: str) -> list[str]:
    values = []
    for part in text.split(";"):
        _, sep, value = part.partition("=")
        if sep and len(value.strip()) >= 8:  # short values (flags, paths) are not secrets
            values.append(value.strip())
    return values


def shown_body(body: bytes) -> str | Any:
    """A body for the log: parsed JSON when it is, else text, cut at ``BODY_SHOWN``."""
    if len(body) <= BODY_SHOWN:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    text = body[:BODY_SHOWN].decode("utf-8", "replace")
    return text + ("…" if len(body) > BODY_SHOWN else "")
