"""Forward one request to one backend and relay its answer (SPEC §4 step 8, §5).

The plain path streams both ways: the request body goes upstream chunk by
chunk, and the response is either relayed whole (when it already arrived with
its headers, the common small-JSON case) or streamed chunk by chunk with
backpressure. Nothing is retried once the request body was consumed or a
response byte reached the client.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.errors import BodyTooLarge
from proxy.headers import connection_tokens, content_length, request_head, response_headers
from proxy.table import BackendTarget
from proxy.upstream import UpstreamConnection, UpstreamError, UpstreamReset

_IDEMPOTENT_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
_CHUNK_END = b"0\r\n\r\n"


class StreamAborted(Exception):
    """The backend failed after the response had started; the client connection was cut."""

    def __init__(self, response: web.StreamResponse, error: UpstreamError) -> None:
        super().__init__(str(error))
        self.response = response
        self.error = error


def body_framing(request: web.BaseRequest, max_body: int) -> bytes | None:
    """The framing header line for the upstream request, or None for no body."""
    length = request.content_length
    if length is not None:
        if length > max_body:
            raise BodyTooLarge(max_body)
        return b"content-length: %d\r\n" % length
    if request.body_exists:
        return b"transfer-encoding: chunked\r\n"
    return None


async def send_request(
    request: web.BaseRequest,
    target: BackendTarget,
    client_ip: str | None,
    max_body: int,
    idle_timeout: float,
) -> UpstreamConnection:
    """Send the request (head and body) upstream; returns the connection awaiting its answer.

    A reused keep-alive connection that turns out closed before anything was
    answered is replaced once, but only for a body-less idempotent request.
    """
    framing = body_framing(request, max_body)
    also_drop = connection_tokens(request.headers.get("connection"))
    head = request_head(
        request.method,
        request.raw_path,
        request.raw_headers,
        client_ip=client_ip,
        scheme=request.scheme,
        body_framing=framing,
        also_drop=also_drop,
    )
    head_only = request.method == "HEAD"
    conn, reused = await target.pool.acquire()
    if reused and conn.closed and framing is None and request.method in _IDEMPOTENT_WITHOUT_BODY:
        conn, reused = await target.pool.connect(), False
    try:
        if conn.closed:
            raise UpstreamReset("pooled backend connection was closed")
        conn.begin(head, head_request=head_only, response_timeout=target.response_timeout)
        if framing is not None:
            await _send_body(
                request,
                conn,
                chunked=framing[0:1] == b"t",
                max_body=max_body,
                idle_timeout=idle_timeout,
            )
    except BaseException:
        conn.close()
        raise
    return conn


async def _send_body(
    request: web.BaseRequest,
    conn: UpstreamConnection,
    *,
    chunked: bool,
    max_body: int,
    idle_timeout: float,
) -> None:
    content = request.content
    sent = 0
    while True:
        async with asyncio.timeout(idle_timeout):
            chunk = await content.readany()
        if not chunk:
            break
        sent += len(chunk)
        if sent > max_body:
            raise BodyTooLarge(max_body)
        if chunked:
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            conn.write(chunk)
        await conn.drain()
        if conn.error() is not None:
            raise conn.error()  # type: ignore[misc]
    if chunked:
        conn.write(_CHUNK_END)


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
    request: web.BaseRequest,
    conn: UpstreamConnection,
    target: BackendTarget,
    extra_headers: tuple[tuple[str, str], ...],
) -> web.StreamResponse:
    """Answer the client with what the backend said; the connection goes back to the pool."""
    headers = response_headers(conn.raw_headers)
    for name, value in extra_headers:
        headers.add(name, value)
    if conn.complete and not conn.head_request:
        body = conn.take_buffered_body()
        target.pool.release(conn)
        return web.Response(status=conn.status, headers=headers, body=body)
    response = web.StreamResponse(status=conn.status, headers=headers)
    length = content_length(conn.raw_headers)
    if length is not None:
        response.content_length = length
    try:
        await response.prepare(request)
        while (chunk := await conn.next_chunk(target.idle_timeout)) is not None:
            await response.write(chunk)
    except UpstreamError as error:
        # Bytes already reached the client: all we can do honestly is cut the
        # connection so it sees a truncated answer, never an appended error.
        conn.close()
        abort_client(request)
        raise StreamAborted(response, error) from error
    except BaseException:
        conn.close()
        raise
    target.pool.release(conn)
    await response.write_eof()
    return response


def abort_client(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
