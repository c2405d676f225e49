"""The client's bytes never pile up in the proxy without bound: reading the client
socket pauses at a high-water mark wherever the proxy holds bytes it cannot pass on
yet (an upgrade the backend has not answered, bytes behind a request the proxy
refused, pipelined requests parsed ahead of the one being served).

Observable: the proxy's own buffers (``tunnel_backlog``, the request queue) and how
much the client could hand over before its socket blocked."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.http.downstream import MAX_PIPELINED
from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout
from tests.http.test_raw_socket import error_code
from tests.support.backends import RawConnection, request_bytes

MIB = 1024 * 1024
FLOOD = 32 * MIB
BOUND = 1 * MIB  # the high-water mark is 256 KiB; one more socket read may land on top


class SlowUpgradeBackend:
    """Reads an upgrade head, answers 101 only when released, then counts and hashes
    every byte the tunnel brings until the client side closes."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.heads = 0
        self.received = 0
        self.digest = hashlib.sha256()
        self.done = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            self.heads += 1
            await self.release.wait()
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            while data := await reader.read(256 * 1024):
                self.received += len(data)
                self.digest.update(data)
        self.done.set()
        writer.close()


@pytest.fixture
async def slow_upgrade(
    start_turnout: StartTurnout,
) -> AsyncIterator[tuple[Turnout, SlowUpgradeBackend]]:
    backend = SlowUpgradeBackend()
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield await start_turnout(url, url), backend
    finally:
        backend.release.set()
        server.close()


def backlog(turnout: Turnout) -> int:
    return sum(len(conn.tunnel_backlog) for conn in turnout.service._connections)


async def largest_until_stalled(probe: Callable[[], int], unsent: Callable[[], int]) -> int:
    """Poll ``probe`` until it passes BOUND, or the client's writes have stalled (bytes
    still unsent and ``probe`` unchanged for 0.5 s); returns the largest value seen."""
    largest, last, stable_since = 0, -1, time.monotonic()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        value = probe()
        largest = max(largest, value)
        if value > BOUND:
            break
        if value != last:
            last, stable_since = value, time.monotonic()
        elif unsent() > 0 and time.monotonic() - stable_since > 0.5:
            break
        await asyncio.sleep(0.02)
    return largest


async def test_bytes_after_an_upgrade_head_are_bounded_while_the_backend_waits(
    slow_upgrade: tuple[Turnout, SlowUpgradeBackend],
) -> None:
    turnout, backend = slow_upgrade
    reader, writer = await asyncio.open_connection("127.0.0.1", turnout.proxy_port)
    flood = bytes(range(256)) * (FLOOD // 256)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + flood
    )
    transport = writer.transport
    largest = await largest_until_stalled(lambda: backlog(turnout), transport.get_write_buffer_size)
    assert largest <= BOUND, f"the proxy held {largest} bytes for the tunnel"
    assert transport.get_write_buffer_size() > FLOOD // 2  # the client was held back
    # The backend answers: everything held back and everything after arrives, in order.
    backend.release.set()
    async with asyncio.timeout(15):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        await writer.drain()
        writer.write_eof()
        await backend.done.wait()
    writer.close()
    assert backend.received == FLOOD
    assert backend.digest.hexdigest() == hashlib.sha256(flood).hexdigest()


async def test_bytes_behind_a_refused_request_are_not_kept(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="slow")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = await aiohttp_server(app)
    url = str(server.make_url(""))
    turnout = await start_turnout(url, url)
    reader, writer = await asyncio.open_connection("127.0.0.1", turnout.proxy_port)
    writer.write(request_bytes("GET", "/slow") + b"NOT HTTP\r\n\r\n" + b"z" * FLOOD)
    transport = writer.transport

    def held() -> int:
        return backlog(turnout)

    try:
        largest = await largest_until_stalled(held, transport.get_write_buffer_size)
        assert largest <= BOUND, f"the proxy held {largest} bytes behind a refused request"
        release.set()
        conn = RawConnection(reader, writer)
        first = await conn.response()
        assert (first.status, first.body) == (200, b"slow")
        refused = await conn.response()
        assert refused.status == 400
        assert await conn.closed_by_peer()
    finally:
        release.set()
        writer.close()


async def test_pipelined_requests_parsed_ahead_are_capped(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    """500 tiny requests in one write are parsed in one go: without a cap, each
    becomes a queued request object (many times its wire size). Past MAX_PIPELINED
    the proxy answers those queued, then 429, and closes."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    server = await aiohttp_server(app)
    url = str(server.make_url(""))
    turnout = await start_turnout(url, url)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(500)))
        statuses: list[int] = []
        async with asyncio.timeout(15):
            for _ in range(500):
                response = await conn.response()
                if response.status != 200:
                    break
                statuses.append(response.status)
        assert len(statuses) <= MAX_PIPELINED, "every pipelined request was queued"
        assert response.status == 429
        assert error_code(response) == "too_many_pipelined_requests"
        assert await conn.closed_by_peer()
    finally:
        await conn.close()
    assert seen == [f"/{i}" for i in range(len(statuses))]
