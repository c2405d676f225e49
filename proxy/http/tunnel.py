"""A byte tunnel between a client and a backend connection, after a 101 answer.

Every byte either side sends is written to the other, unchanged, until both
sides have finished sending, one side is gone, or the tunnel is idle for
``idle_timeout``. A half-close travels through: a side that is done sending
(EOF) has the other side's write end shut once what it sent is written, and
keeps receiving. A side that cannot take more bytes pauses the reading of the
other (backpressure both ways).
"""

from __future__ import annotations

import asyncio
import time

from proxy.http.downstream import ClientConnection
from proxy.http.upstream import UpstreamConnection


async def splice(client: ClientConnection, conn: UpstreamConnection, idle_timeout: float) -> None:
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

    finished: set[str] = set()

    def sent_everything(side: str, other: asyncio.WriteTransport | None) -> None:
        finished.add(side)
        if other is not None and other.can_write_eof() and not other.is_closing():
            other.write_eof()  # after whatever is still buffered for it
        if len(finished) == 2:
            end()

    conn.on_close = end
    client.on_tunnel_eof = lambda: sent_everything("client", conn.transport)
    conn.on_tunnel_eof = lambda: sent_everything("backend", client.transport)
    _couple_backpressure(client, conn)
    if conn.tunnel_backlog:
        to_client(bytes(conn.tunnel_backlog))
        conn.tunnel_backlog.clear()
    client.start_tunnel(to_backend)  # flushes its backlog, resumes reading
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
