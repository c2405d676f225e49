"""Send one request to one backend and relay its answer (the bytes of an Exchange).

The plain path streams both ways: the request body goes upstream chunk by
chunk, and the response is either relayed in one write (when it arrived whole
with its headers, the common small-JSON case) or streamed chunk by chunk with
backpressure. Nothing here retries or decides: the ``Exchange`` does.
Each function reports to the exchange's taps, if it has any.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

import structlog

from proxy.http.errors import BodyTooLarge, StreamAborted, UpstreamError, UpstreamTimeout
from proxy.http.headers import relayed_response_head
from proxy.http.outgoing import body_framing, upstream_head
from proxy.http.pool import BackendTarget
from proxy.http.upstream import UpstreamConnection
from proxy.http.wire import CHUNK_END, CONTINUE, chunk, has_no_body, status_line

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange
    from proxy.http.request import IncomingRequest

_log = structlog.get_logger("turnout.forwarding")

_CLOSE = b"connection: close\r\n"


async def send_request(
    exchange: Exchange, target: BackendTarget, *, replay_limit: int = 0, fresh: bool = False
) -> UpstreamConnection:
    """Send the request (head and body) upstream; returns the connection awaiting its answer.

    Connecting is bounded by the backend's connect timeout and what is left of the
    exchange's deadline. The body is bounded by idle timeouts only: the response
    timer starts when it has all gone up (or when the backend answered early).
    With ``replay_limit`` the body is kept, up to that many bytes, so that a
    fallback can send it again. ``fresh`` skips the pool's idle connections.
    """
    request, limits = exchange.request, exchange.table.config.limits
    framing = body_framing(request, limits.max_body_bytes)
    head = upstream_head(request, exchange.client, framing)
    loop = asyncio.get_running_loop()
    connect_timeout = target.connect_timeout
    if exchange.deadline:
        remaining = exchange.deadline - loop.time()
        if remaining <= 0:
            raise UpstreamTimeout("request_timeout passed before the backend was tried")
        connect_timeout = min(connect_timeout, remaining)
    conn, _ = await target.pool.acquire(connect_timeout, fresh=fresh)
    try:
        conn.begin(head, head_request=request.method == "HEAD")
        taps = exchange.taps
        if taps is not None:
            for tap in taps:
                tap.request_head_sent(exchange, exchange.backend, head)
        if framing is not None:
            if request.expect_continue and request.has_body:
                request.expect_continue = False  # answered once, even if replayed
                exchange.client.write(CONTINUE)
            await _send_body(exchange, conn, target, replay_limit=replay_limit)
        if not exchange.deadline:
            exchange.deadline = loop.time() + exchange.table.config.request_timeout
        remaining = exchange.deadline - loop.time()
        conn.expect_response(max(0.0, min(target.response_timeout, remaining)))
    except BaseException:
        conn.close()
        raise
    return conn


def can_replay_body(request: IncomingRequest) -> bool:
    """True while the body is untouched, or was kept whole so far for a replay."""
    return not request.body_started or request.replay_chunks is not None


async def _send_body(
    exchange: Exchange, conn: UpstreamConnection, target: BackendTarget, *, replay_limit: int
) -> None:
    """Stream the body up; stops early when the backend answers before reading it all
    (the answer is relayed, and neither connection can be reused afterwards)."""
    conn.on_answer = exchange.request.body.interrupt
    try:
        await _stream_request_body(exchange, conn, target, replay_limit)
    except UpstreamError:
        if not conn.answered:
            raise
    finally:
        conn.on_answer = None
    if conn.answered and not exchange.request.body.done:
        conn.keep_alive = False  # the backend still expects the rest of the body


async def _stream_request_body(
    exchange: Exchange, conn: UpstreamConnection, target: BackendTarget, replay_limit: int
) -> None:
    request, limits = exchange.request, exchange.table.config.limits
    chunked = request.content_length is None
    max_body = limits.max_body_bytes
    taps = exchange.taps

    def send(data: bytes) -> None:
        conn.write(chunk(data) if chunked else data)
        if taps is not None:
            for tap in taps:
                tap.request_body_chunk(exchange, data)

    if request.body_started:  # a replay: what was kept first, then the rest
        for data in request.replay_chunks or ():
            send(data)
    else:
        request.body_started = True
        request.replay_chunks = [] if replay_limit else None
    body = request.body
    while not conn.answered and (data := await body.read(limits.client_idle_timeout)):
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
        await conn.drain(target.idle_timeout)
        error = conn.error()
        if error is not None:
            raise error
    if chunked and not conn.answered:
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
    exchange: Exchange, conn: UpstreamConnection, target: BackendTarget, extra_lines: bytes
) -> bool:
    """Answer the client with what the backend said; True if the client connection may
    stay open. The backend connection goes back to the pool when the exchange is whole."""
    request, client, taps = exchange.request, exchange.client, exchange.taps
    status = conn.status
    lines, declared = relayed_response_head(conn.raw_headers)
    head = status_line(status) + lines + extra_lines
    if not request.keep_alive:
        head += _CLOSE
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
        if taps is not None:
            for tap in taps:
                tap.response_body_chunk(exchange, body)
        return True
    return await _stream_body(exchange, conn, target, head, declared)


async def _stream_body(
    exchange: Exchange,
    conn: UpstreamConnection,
    target: BackendTarget,
    head: bytes,
    declared: int | None,
) -> bool:
    request, client, taps = exchange.request, exchange.client, exchange.taps
    chunked = declared is None and request.version == "1.1"
    if declared is not None:
        head += b"content-length: %d\r\n" % declared
    elif chunked:
        head += b"transfer-encoding: chunked\r\n"
    elif request.keep_alive:
        head += _CLOSE  # an HTTP/1.0 client: the body ends when the connection does
    client.write(head + b"\r\n")
    exchange.streamed_at = perf_counter()
    try:
        while data := await conn.body.read(target.idle_timeout):
            client.write(chunk(data) if chunked else data)
            if taps is not None:
                for tap in taps:
                    tap.response_body_chunk(exchange, data)
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
