"""Forward one request to one backend and relay its answer (SPEC §4 step 8, §5).

The plain path streams both ways: the request body goes upstream chunk by
chunk, and the response is either relayed in one write (when it arrived whole
with its headers, the common small-JSON case) or streamed chunk by chunk with
backpressure. Nothing is retried once the request body was consumed or a
response byte reached the client.
"""

from __future__ import annotations

import asyncio

import structlog

from proxy.http.downstream import ClientConnection, IncomingRequest
from proxy.http.errors import (
    BodyTooLarge,
    StreamAborted,
    UpstreamError,
    UpstreamReset,
    UpstreamTimeout,
)
from proxy.http.headers import (
    connection_tokens,
    content_length,
    request_head,
    response_header_lines,
)
from proxy.http.pool import BackendTarget
from proxy.http.upstream import UpstreamConnection
from proxy.http.wire import CHUNK_END, CONTINUE, chunk, has_no_body, status_line

_log = structlog.get_logger("turnout.forwarding")

_IDEMPOTENT_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
_CLOSE = b"connection: close\r\n"


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


async def send_request(
    request: IncomingRequest,
    client: ClientConnection,
    target: BackendTarget,
    *,
    max_body: int,
    idle_timeout: float,
    deadline: float,
    replay_limit: int = 0,
) -> UpstreamConnection:
    """Send the request (head and body) upstream; returns the connection awaiting its answer.

    ``deadline`` (loop time) bounds connecting and waiting for the response head,
    together with the backend's own timeouts. With ``replay_limit`` the body is
    kept, up to that many bytes, so that a fallback can send it again.
    A pooled connection found closed before use is replaced once, but only for a
    body-less idempotent request (a write is never sent twice).
    """
    framing = body_framing(request, max_body)
    head = upstream_head(request, client, framing)
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        raise UpstreamTimeout("request_timeout passed before the backend was tried")
    conn, reused = await target.pool.acquire(min(target.connect_timeout, remaining))
    if reused and conn.closed and framing is None and request.method in _IDEMPOTENT_WITHOUT_BODY:
        conn = await target.pool.connect(min(target.connect_timeout, remaining))
    try:
        if conn.closed:
            raise UpstreamReset("pooled backend connection was closed")
        conn.begin(
            head,
            head_request=request.method == "HEAD",
            response_timeout=min(target.response_timeout, remaining),
        )
        if framing is not None:
            if request.expect_continue and request.has_body:
                request.expect_continue = False  # answered once, even if replayed
                client.write(CONTINUE)
            await _send_body(
                request,
                conn,
                chunked=request.content_length is None,
                max_body=max_body,
                idle_timeout=idle_timeout,
                replay_limit=replay_limit,
            )
    except BaseException:
        conn.close()
        raise
    return conn


def can_replay_body(request: IncomingRequest) -> bool:
    """True while the body is untouched, or was kept whole so far for a replay."""
    return not request.body_started or request.replay_chunks is not None


async def _send_body(
    request: IncomingRequest,
    conn: UpstreamConnection,
    *,
    chunked: bool,
    max_body: int,
    idle_timeout: float,
    replay_limit: int,
) -> None:
    def send(data: bytes) -> None:
        conn.write(chunk(data) if chunked else data)

    if request.body_started:  # a replay: what was kept first, then the rest
        for data in request.replay_chunks or ():
            send(data)
    else:
        request.body_started = True
        request.replay_chunks = [] if replay_limit else None
    body = request.body
    while data := await body.read(idle_timeout):
        if body.received > max_body:
            raise BodyTooLarge(max_body)
        kept = request.replay_chunks
        if kept is not None:
            if body.received > replay_limit:
                request.replay_chunks = None
                _log.info("fallback_body_not_kept", limit=replay_limit)
            else:
                kept.append(data)
        send(data)
        await conn.drain()
        error = conn.error()
        if error is not None:
            raise error
    if chunked:
        conn.write(CHUNK_END)


async def await_response(conn: UpstreamConnection) -> None:
    """Wait for the response head (the connection's own timer bounds the wait)."""
    waiter = conn.headers_done
    assert waiter is not None
    try:
        await waiter
    except BaseException:
        conn.close()
        raise


async def relay_response(
    request: IncomingRequest,
    client: ClientConnection,
    conn: UpstreamConnection,
    target: BackendTarget,
    extra_lines: bytes,
) -> bool:
    """Answer the client with what the backend said; True if the client connection may
    stay open. The backend connection goes back to the pool when the exchange is whole."""
    status = conn.status
    head = status_line(status) + response_header_lines(conn.raw_headers) + extra_lines
    if not request.keep_alive:
        head += _CLOSE
    declared = content_length(conn.raw_headers)
    if has_no_body(status, request.method):
        if declared is not None and status != 204:
            head += b"content-length: %d\r\n" % declared
        client.write(head + b"\r\n")
        target.pool.release(conn)
        return True
    if conn.complete:
        body = conn.body.take_all()
        target.pool.release(conn)
        client.write(b"%bcontent-length: %d\r\n\r\n%b" % (head, len(body), body))
        return True
    return await _stream_body(request, client, conn, target, head, declared)


async def _stream_body(
    request: IncomingRequest,
    client: ClientConnection,
    conn: UpstreamConnection,
    target: BackendTarget,
    head: bytes,
    declared: int | None,
) -> bool:
    chunked = declared is None and request.version == "1.1"
    if declared is not None:
        head += b"content-length: %d\r\n" % declared
    elif chunked:
        head += b"transfer-encoding: chunked\r\n"
    elif request.keep_alive:
        head += _CLOSE  # an HTTP/1.0 client: the body ends when the connection does
    client.write(head + b"\r\n")
    try:
        while data := await conn.body.read(target.idle_timeout):
            client.write(chunk(data) if chunked else data)
            await client.drain()
    except UpstreamError as error:
        # Bytes already reached the client: cut the connection so it sees a
        # truncated answer, never an error appended to a half-sent one.
        conn.close()
        client.abort()
        raise StreamAborted(conn.status, error) from error
    except BaseException:
        conn.close()
        raise
    if chunked:
        client.write(CHUNK_END)
    target.pool.release(conn)
    return declared is not None or chunked
