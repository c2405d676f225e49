"""Protocol upgrades (WebSocket): negotiate with the backend, then relay raw bytes.

The upgrade request goes to a fresh backend connection (never a pooled one)
with its Upgrade and Connection headers kept. If the backend answers 101, the
proxy relays that answer and then splices the two sockets: every byte either
side sends is written to the other, unchanged, until one side closes or the
tunnel is idle for ``timeouts.idle``. Any other answer is relayed as a normal
response, and the client connection is closed after it.
"""

from __future__ import annotations

import asyncio
import time

from proxy.exchange.relay import await_response, relay_response, upstream_head
from proxy.http.downstream import ClientConnection, IncomingRequest
from proxy.http.headers import response_header_lines
from proxy.http.pool import BackendTarget
from proxy.http.upstream import UpstreamConnection
from proxy.http.wire import status_line


async def open_tunnel(
    request: IncomingRequest,
    client: ClientConnection,
    target: BackendTarget,
    extra_lines: bytes,
) -> int:
    """Run one upgraded connection to its end; returns the backend's status code."""
    conn = await target.pool.connect()
    try:
        conn.begin(
            upstream_head(request, client, None),
            head_request=False,
            response_timeout=target.response_timeout,
        )
        await await_response(conn)
        if conn.status != 101:
            request.keep_alive = False
            await relay_response(request, client, conn, target, extra_lines)
            return conn.status
        head = status_line(101) + response_header_lines(conn.raw_headers, upgrade=True)
        client.write(head + extra_lines + b"\r\n")
        await _splice(client, conn, target.idle_timeout)
        client.close()
        return 101
    finally:
        conn.close()  # the client connection is closed by its caller on any other path


async def _splice(client: ClientConnection, conn: UpstreamConnection, idle_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    last_activity = time.monotonic()

    def end() -> None:
        if not ended.done():
            ended.set_result(None)

    def to_client(data: bytes) -> None:
        nonlocal last_activity
        last_activity = time.monotonic()
        client.write(data)

    def to_backend(data: bytes) -> None:
        nonlocal last_activity
        last_activity = time.monotonic()
        if conn.transport is not None and not conn.closed:
            conn.transport.write(data)

    conn.on_close = end
    _couple_backpressure(client, conn)
    client.tunnel_sink = to_backend
    for backlog, sink in ((conn.tunnel_backlog, to_client), (client.tunnel_backlog, to_backend)):
        if backlog:
            sink(bytes(backlog))
            backlog.clear()
    conn.tunnel_sink = to_client
    if conn.closed:
        return
    while not client.closed and not conn.closed:
        try:
            await asyncio.wait_for(asyncio.shield(ended), timeout=idle_timeout)
        except TimeoutError:
            if time.monotonic() - last_activity >= idle_timeout:
                return
        if ended.done():
            return


def _couple_backpressure(client: ClientConnection, conn: UpstreamConnection) -> None:
    """A side that cannot take more bytes stops the reading of the other side's socket,
    so a fast sender and a slow receiver cannot grow the proxy's buffers."""
    upstream = conn.transport
    if upstream is None:
        return
    client.write_flow.on_pause = upstream.pause_reading
    client.write_flow.on_resume = upstream.resume_reading
    conn.write_flow.on_pause = client.pause_reading
    conn.write_flow.on_resume = client.resume_reading
