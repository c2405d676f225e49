"""Response heads and the proxy's own JSON error answers, as bytes."""

from __future__ import annotations

from http import HTTPStatus

import orjson

_STATUS_LINES: dict[int, bytes] = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("latin-1")
    for status in HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNK_END = b"0\r\n\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def has_no_body(status: int, request_method: str) -> bool:
    """RFC 9110 §6.4.1: HEAD answers, 1xx, 204 and 304 never carry a body."""
    return request_method == "HEAD" or status < 200 or status in (204, 304)


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_bytes(
    status: int,
    code: str,
    message: str,
    *,
    close: bool = False,
    extra: bytes = b"",
) -> bytes:
    """A complete JSON error response; ``extra`` holds ready header lines."""
    body = error_body(code, message)
    return b"".join(
        (
            status_line(status),
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            b"connection: close\r\n" if close else b"",
            extra,
            b"\r\n",
            body,
        )
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)
