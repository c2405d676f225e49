"""The request as a backend receives it: its head and its body framing."""

from __future__ import annotations

from proxy.http.downstream import ClientConnection
from proxy.http.errors import BodyTooLarge
from proxy.http.headers import connection_tokens, request_head
from proxy.http.request import IncomingRequest


def body_framing(request: IncomingRequest, max_body: int) -> bytes | None:
    """The framing header line for the upstream request, or None for no body."""
    length = request.content_length
    if length is not None:
        if length > max_body:
            raise BodyTooLarge(max_body)
        return b"content-length: %d\r\n" % length
    if request.chunked:
        return b"transfer-encoding: chunked\r\n"
    return None


def upstream_head(
    request: IncomingRequest, client: ClientConnection, framing: bytes | None
) -> bytes:
    """The request head for the backend: hop-by-hop headers dropped, forwarding added."""
    also_drop: frozenset[bytes] = frozenset()
    if "connection" in request.headers:  # every Connection line counts, not just the first
        also_drop = also_drop.union(
            *(
                connection_tokens(value.decode("latin-1"))
                for name, value in request.raw_headers
                if name.lower() == b"connection"
            )
        )
    return request_head(
        request.method,
        request.target,
        request.raw_headers,
        client_ip=client.remote,
        scheme="http",
        body_framing=framing,
        also_drop=also_drop,
        upgrade=request.headers.get("upgrade") if request.upgrade else None,
    )
