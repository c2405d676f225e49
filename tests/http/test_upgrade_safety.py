"""Only ``Upgrade: websocket`` is tunnelled (SPEC §5). An ``h2c`` upgrade is a known way
to smuggle requests past a proxy's routing (once the backend switched to HTTP/2 on the
tunnel, every later request skips the proxy's decisions), so the proxy ignores any
other upgrade, as RFC 9110 §7.8 lets a server do: the request is forwarded as a plain
HTTP/1.1 request without Upgrade, HTTP2-Settings and the Connection tokens naming
them, and the client connection goes on as HTTP/1.1. CONNECT is refused.

The backend here is a raw socket server that *would* switch to h2c if asked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout
from tests.support.backends import RawConnection, request_bytes

H2C_HEADERS = (
    b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
)


class EagerH2cBackend:
    """Answers 101 to any ``Upgrade: h2c`` and 200 to anything else; keeps every head."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                lower = head.lower()
                length = _content_length(lower)
                if length:
                    await reader.readexactly(length)
                if b"upgrade: h2c" in lower:
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\n"
                        b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    )
                    await writer.drain()
                    return
                path = head.split(b" ", 2)[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(path), path))
                await writer.drain()
        writer.close()


def _content_length(lower_head: bytes) -> int:
    for line in lower_head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


@pytest.fixture
async def h2c_turnout(
    start_turnout: StartTurnout,
) -> AsyncIterator[tuple[Turnout, EagerH2cBackend]]:
    backend = EagerH2cBackend()
    backend.server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    try:
        yield await start_turnout(backend.url, backend.url), backend
    finally:
        backend.server.close()


async def test_h2c_upgrade_is_forwarded_as_plain_http11(
    h2c_turnout: tuple[Turnout, EagerH2cBackend],
) -> None:
    turnout, backend = h2c_turnout
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(b"GET /first HTTP/1.1\r\nHost: test\r\n" + H2C_HEADERS + b"\r\n")
        response = await conn.response()
        assert response.status == 200
        assert response.body == b"/first"
        # The connection carries on as HTTP/1.1: a second request is parsed and routed.
        await conn.send(request_bytes("GET", "/next"))
        following = await conn.response()
        assert following.body == b"/next"
    finally:
        await conn.close()
    assert len(backend.heads) == 2
    for head in backend.heads:
        assert b"h2c" not in head.lower()
        assert b"http2-settings" not in head.lower()
        assert b"upgrade" not in head.lower()


async def test_h2c_upgrade_followed_by_a_pipelined_request(
    h2c_turnout: tuple[Turnout, EagerH2cBackend],
) -> None:
    turnout, backend = h2c_turnout
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"GET /first HTTP/1.1\r\nHost: test\r\n"
            + H2C_HEADERS
            + b"\r\n"
            + request_bytes("GET", "/pipelined")
        )
        first, second = await conn.response(), await conn.response()
    finally:
        await conn.close()
    assert (first.status, first.body) == (200, b"/first")
    assert (second.status, second.body) == (200, b"/pipelined")
    assert all(b"h2c" not in head.lower() for head in backend.heads)


async def test_h2c_upgrade_with_a_body_is_refused(
    h2c_turnout: tuple[Turnout, EagerH2cBackend],
) -> None:
    """llhttp hands over the bytes after an upgrade head unparsed, body included; a
    refused upgrade cannot be framed reliably, so it is a 400 (the client may retry
    without Upgrade, as HTTP/2 clients do)."""
    turnout, backend = h2c_turnout
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"POST /with-body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
            + H2C_HEADERS
            + b"\r\nhello"
        )
        response = await conn.response()
        assert response.status == 400
        assert await conn.closed_by_peer()
    finally:
        await conn.close()
    assert backend.heads == []


@pytest.mark.parametrize(
    "upgrade",
    [b"h2c", b"websocket, h2c", b"h2c, websocket", b"foo/1", b"WebSocket2"],
)
async def test_only_a_lone_websocket_token_is_tunnelled(
    h2c_turnout: tuple[Turnout, EagerH2cBackend], upgrade: bytes
) -> None:
    turnout, backend = h2c_turnout
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"GET /u HTTP/1.1\r\nHost: test\r\nUpgrade: " + upgrade + b"\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        response = await conn.response()
    finally:
        await conn.close()
    assert response.status == 200
    [head] = backend.heads
    assert b"upgrade" not in head.lower()


async def test_connect_is_refused(h2c_turnout: tuple[Turnout, EagerH2cBackend]) -> None:
    turnout, backend = h2c_turnout
    for target in (b"evil.example:443", b"/tunnel"):
        conn = await RawConnection.open(turnout.proxy_port)
        try:
            await conn.send(b"CONNECT " + target + b" HTTP/1.1\r\nHost: test\r\n\r\n")
            response = await conn.response()
            assert 400 <= response.status < 500
            assert await conn.closed_by_peer()
        finally:
            await conn.close()
    assert backend.heads == []
    ok = await RawConnection.open(turnout.proxy_port)
    try:
        await ok.send(request_bytes("GET", "/after"))
        assert (await ok.response()).body == b"/after"
    finally:
        await ok.close()
