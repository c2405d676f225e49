"""Protocol upgrades (WebSocket): negotiate with the backend, then tunnel raw bytes.

The upgrade request goes to a fresh backend connection (never a pooled one)
with its Upgrade and Connection headers kept. If the backend answers 101, the
proxy relays that answer and then splices the two sockets
(``proxy.http.tunnel``). Any other answer is relayed as a normal response, and
the client connection is closed after it.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from proxy.exchange.relay import await_response, relay_response
from proxy.http.headers import response_header_lines
from proxy.http.outgoing import upstream_head
from proxy.http.pool import BackendTarget
from proxy.http.tunnel import splice
from proxy.http.wire import status_line

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange


async def open_tunnel(exchange: Exchange, target: BackendTarget, extra_lines: bytes) -> int:
    """Run one upgraded connection to its end; returns the backend's status code."""
    request, client = exchange.request, exchange.client
    conn = await target.pool.connect()
    try:
        conn.begin(upstream_head(request, client, None), head_request=False)
        conn.expect_response(target.response_timeout)
        await await_response(conn)
        if conn.status != 101:
            request.keep_alive = False
            await relay_response(exchange, conn, target, extra_lines)
            return conn.status
        head = status_line(101) + response_header_lines(conn.raw_headers, upgrade=True)
        client.write(head + extra_lines + b"\r\n")
        exchange.streamed_at = perf_counter()
        await splice(client, conn, target.idle_timeout)
        conn.close(flush=True)  # both ends: what is buffered still goes out
        client.close()
        return 101
    finally:
        conn.close()  # the client connection is closed by its caller on any other path
