"""Header rewriting at the proxy boundary (RFC 9110 §7.6.1), pure functions.

Hop-by-hop headers (Connection, the headers Connection names, Keep-Alive,
Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade) describe one
connection, not the message, and are dropped in both directions. The message
framing (Content-Length / chunked) is re-done by whoever writes the next hop.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Not hop-by-hop, but the next hop recomputes them: aiohttp frames the
# client's response itself, and we frame the upstream request ourselves.
_REFRAMED = frozenset({b"content-length", b"transfer-encoding"})
# HTTP2-Settings belongs to an h2c upgrade, which is never forwarded (RFC 9113 §3.2.1
# makes it a connection option; dropped even when the client forgot to name it).
_REQUEST_DROP = HOP_BY_HOP | {
    b"expect",
    b"content-length",
    b"http2-settings",
    b"x-forwarded-for",
    b"x-forwarded-host",
}
_RESPONSE_DROP = HOP_BY_HOP | _REFRAMED
_UPGRADE_DROP = _RESPONSE_DROP - {b"connection", b"upgrade"}
# Connection options that name no header.
_CONNECTION_OPTIONS = frozenset({b"keep-alive", b"close"})


def connection_tokens(connection_value: str | None) -> frozenset[bytes]:
    """Header names listed in a Connection header value (they are hop-by-hop too)."""
    if not connection_value:
        return frozenset()
    return frozenset(
        token.strip().lower().encode("latin-1")
        for token in connection_value.split(",")
        if token.strip()
    )


def request_head(
    method: str,
    target: str,
    raw_headers: Iterable[tuple[bytes, bytes]],
    *,
    client_ip: str | None,
    scheme: str,
    body_framing: bytes | None,
    also_drop: frozenset[bytes] = frozenset(),
    upgrade: str | None = None,
) -> bytes:
    """The upstream request head: the client's headers minus hop-by-hop, plus X-Forwarded-*.

    ``body_framing`` is the framing header line to add (``content-length: N`` or
    ``transfer-encoding: chunked``), or None for a request without a body.
    ``also_drop`` holds the names the client's Connection header listed.
    ``upgrade`` keeps a protocol upgrade (``Upgrade: websocket``) in the request.
    """
    drop = _REQUEST_DROP | also_drop if also_drop else _REQUEST_DROP
    lines = [method.encode("latin-1"), b" ", target.encode("latin-1"), b" HTTP/1.1\r\n"]
    append = lines.append
    forwarded_for: bytes | None = None
    host: bytes | None = None
    has_proto = False
    for name, value in raw_headers:
        lower = name.lower()
        if lower in drop:
            if lower == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        if lower == b"host":
            host = value
        elif lower == b"x-forwarded-proto":
            has_proto = True
        append(name)
        append(b": ")
        append(value)
        append(b"\r\n")
    _append_forwarded(lines, forwarded_for, host, has_proto, client_ip, scheme)
    if upgrade is not None:
        lines += [b"connection: upgrade\r\nupgrade: ", upgrade.encode("latin-1"), b"\r\n"]
    if body_framing is not None:
        append(body_framing)
    append(b"\r\n")
    return b"".join(lines)


def _append_forwarded(
    lines: list[bytes],
    forwarded_for: bytes | None,
    host: bytes | None,
    has_proto: bool,
    client_ip: str | None,
    scheme: str,
) -> None:
    ip = (client_ip or "unknown").encode("latin-1")
    chain = ip if forwarded_for is None else forwarded_for + b", " + ip
    lines += [b"x-forwarded-for: ", chain, b"\r\n"]
    if host is not None:
        lines += [b"x-forwarded-host: ", host, b"\r\n"]
    if not has_proto:
        # Keep a proto set by a TLS-terminating load balancer in front of us.
        lines += [b"x-forwarded-proto: ", scheme.encode("latin-1"), b"\r\n"]


def response_header_lines(
    raw_headers: list[tuple[bytes, bytes]], *, upgrade: bool = False
) -> bytes:
    """The backend's response header lines for the client (see ``relayed_response_head``)."""
    return relayed_response_head(raw_headers, upgrade=upgrade)[0]


def relayed_response_head(
    raw_headers: list[tuple[bytes, bytes]], *, upgrade: bool = False
) -> tuple[bytes, int | None]:
    """The backend's response header lines for the client, minus hop-by-hop and framing,
    and its Content-Length (None: absent or not a number), in one pass over the headers.

    Repeated headers (Set-Cookie) stay repeated; names and values are passed on
    byte for byte. With ``upgrade`` (a 101 answer) Connection and Upgrade are kept.
    """
    drop = _UPGRADE_DROP if upgrade else _RESPONSE_DROP
    lines: list[bytes] = []
    append = lines.append
    named: frozenset[bytes] = frozenset()
    length: bytes | None = None
    for name, value in raw_headers:
        lower = name.lower()
        if lower in drop:
            if lower == b"content-length":
                if length is None:
                    length = value
            elif lower == b"connection" and value.lower() not in _CONNECTION_OPTIONS:
                named = named | connection_tokens(value.decode("latin-1"))
            continue
        append(name)
        append(b": ")
        append(value)
        append(b"\r\n")
    declared = _length(length)
    if named and not upgrade:
        kept = [(n, v) for n, v in raw_headers if n.lower() not in named | {b"connection"}]
        return relayed_response_head(kept)[0], declared
    return b"".join(lines), declared


def _length(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
