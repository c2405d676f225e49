"""Errors the proxy makes itself: JSON bodies ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import orjson
from aiohttp import web

from proxy.upstream import UpstreamError


class BodyTooLarge(Exception):
    """The request body is over ``limits.max_body_bytes`` (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status, body=error_body(code, message), content_type="application/json"
    )


def upstream_error_response(backend: str, error: UpstreamError) -> web.Response:
    """502 for an unreachable or broken backend, 504 for one that did not answer in time."""
    if error.kind == "timeout":
        return error_response(504, "backend_timeout", f"{backend} backend: {error}")
    if error.kind == "connect_error":
        return error_response(502, "backend_unreachable", f"{backend} backend: {error}")
    return error_response(502, "backend_error", f"{backend} backend: {error}")
