"""Errors the proxy raises on its own request path."""

from __future__ import annotations


class BodyTooLarge(Exception):
    """The request body is over ``limits.max_body_bytes`` (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit
