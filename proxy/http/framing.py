"""What a request head may ask for, checked before the request is queued (pure).

Body framing (RFC 9112 §6) and protocol upgrades are where a proxy and a backend
can read one byte stream two ways (request smuggling). llhttp is lenient with
some of it (``Transfer-Encoding: gzip, chunked``), reports some only after the
head callback ran, and stops at any upgrade head; these checks run in that
callback and raise a ``Rejection`` (400), so a refused request never reaches a
backend. See docs/request-safety.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.http.errors import Rejection

RawHeaders = Iterable[tuple[bytes, bytes]]


def check_transfer_encoding(
    version: str, content_length: int | None, raw_headers: RawHeaders
) -> None:
    """Only ``Transfer-Encoding: chunked``, alone, without Content-Length, over HTTP/1.1."""
    if version != "1.1":
        raise Rejection(400, "bad_request", "Transfer-Encoding is not allowed in HTTP/1.0")
    if content_length is not None:
        raise Rejection(400, "bad_request", "Transfer-Encoding with Content-Length")
    if not is_chunked_only(raw_headers):
        raise Rejection(400, "bad_request", "unsupported Transfer-Encoding (only chunked)")


def accept_upgrade(method: str, has_body: bool, raw_headers: RawHeaders) -> bool:
    """Whether to tunnel a request llhttp reports as an upgrade: only WebSocket.

    Any other upgrade is ignored (the request goes on as plain HTTP/1.1) unless it
    has a body, which llhttp leaves unparsed after an upgrade head: that, and
    CONNECT, are refused.
    """
    if method == "CONNECT":
        raise Rejection(400, "bad_request", "CONNECT is not supported")
    if is_websocket_upgrade(raw_headers):
        return True
    if has_body:
        raise Rejection(400, "bad_request", "an upgrade request other than WebSocket with a body")
    return False


def is_websocket_upgrade(raw_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when the Upgrade lines, all of them, offer exactly one protocol: websocket.

    Any other offer (``h2c``, ``websocket, h2c``, ``foo/1``) is ignored, as RFC 9110
    §7.8 allows: an h2c tunnel would carry requests past the proxy's routing.
    """
    offers = [
        token.strip().lower()
        for name, value in raw_headers
        if name.lower() == b"upgrade"
        for token in value.split(b",")
    ]
    return offers == [b"websocket"]


def is_chunked_only(raw_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when the Transfer-Encoding lines, all of them, list exactly ``chunked``.

    RFC 9112 §6.1: ``chunked`` must be the final coding and is applied once. The
    proxy re-frames bodies and decodes no other coding, so any other list (``gzip,
    chunked``, ``chunked, identity``, ``xchunked``, a parameter, an empty member)
    would leave client and backend to disagree on where the body ends.
    """
    codings = [
        token.strip().lower()
        for name, value in raw_headers
        if name.lower() == b"transfer-encoding"
        for token in value.split(b",")
    ]
    return codings == [b"chunked"]


def ends_at_close(raw_headers: RawHeaders) -> bool:
    """An answer with neither Content-Length nor chunked framing: its body ends when
    the connection does (RFC 9112 §6.3, the last rule)."""
    for name, value in raw_headers:
        lower = name.lower()
        if lower == b"content-length" or (
            lower == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            return False
    return True
