"""Streams through the proxy (SPEC §5): WebSocket upgrades and server-sent events.

Both are checked for *liveness*, not just content: the SSE backend does not
write its next event until the client has received the previous one, so a
proxy that buffers would deadlock and fail on a deadline.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import WSMsgType, web
from pytest_aiohttp.plugin import AiohttpServer

from tests.conftest import StartTurnout, wait_until
from tests.support.backends import Recorder, recording_app, unused_port

DEADLINE = 5.0


def ws_backend(
    seen_headers: list[dict[str, str]], close_codes: list[int | None]
) -> web.Application:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        seen_headers.append(dict(request.headers))
        ws = web.WebSocketResponse(protocols=("chat.v1",))
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                if message.data == "close-me":
                    await ws.close(code=4001, message=b"backend says bye")
                    break
                await ws.send_str(f"echo:{message.data}")
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        close_codes.append(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    return app


async def test_websocket_echo_subprotocol_and_close_codes(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    seen_headers: list[dict[str, str]] = []
    close_codes: list[int | None] = []
    backend = await aiohttp_server(ws_backend(seen_headers, close_codes))
    other = await aiohttp_server(recording_app("legacy"))
    turnout = await start_turnout(
        str(other.make_url("")), str(backend.make_url("")), flags={"main": {"percent": 100}}
    )
    url = f"http://127.0.0.1:{turnout.proxy_port}/ws"
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(DEADLINE):
            # Client closes: its close code reaches the backend.
            ws = await session.ws_connect(
                url, protocols=("chat.v2", "chat.v1"), headers={"X-Forwarded-For": "9.9.9.9"}
            )
            assert ws.protocol == "chat.v1"
            assert ws._response.headers["x-turnout-backend"] == "new"
            await ws.send_str("hello")
            assert (await ws.receive()).data == "echo:hello"
            await ws.send_bytes(b"\x00\x01\x02binary")
            reply = await ws.receive()
            assert reply.type == WSMsgType.BINARY
            assert reply.data == b"yranib\x02\x01\x00"
            await ws.close(code=4002, message=b"client says bye")
            await wait_until(lambda: close_codes == [4002], timeout=DEADLINE)

            # Backend closes: its close code reaches the client.
            ws = await session.ws_connect(url, protocols=("chat.v1",))
            await ws.send_str("close-me")
            closing = await ws.receive()
            assert closing.type == WSMsgType.CLOSE
            assert closing.data == 4001
            await ws.close()
            assert ws.close_code == 4001
    headers = seen_headers[0]
    assert headers["X-Forwarded-For"] == "9.9.9.9, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"


async def test_websocket_to_a_down_backend_gets_json_502(start_turnout: StartTurnout) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    turnout = await start_turnout(dead, dead)
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(DEADLINE):
            try:
                await session.ws_connect(f"http://127.0.0.1:{turnout.proxy_port}/ws")
            except aiohttp.WSServerHandshakeError as error:
                assert error.status == 502
            else:
                raise AssertionError("the upgrade to a down backend succeeded")


async def test_sse_events_are_not_buffered(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    received = [asyncio.Event() for _ in range(3)]
    sent_before_received: list[int] = []
    backend_stalled: list[int] = []

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for index in range(3):
            await response.write(f"id: {index}\nevent: tick\ndata: event {index}\n\n".encode())
            try:
                # The next event is only written once the client has this one; the
                # 100 ms cadence of a real feed is the upper bound of this wait.
                await asyncio.wait_for(received[index].wait(), DEADLINE)
            except TimeoutError:
                backend_stalled.append(index)
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    backend = await aiohttp_server(app)
    turnout = await start_turnout(str(backend.make_url("")), str(backend.make_url("")))
    got: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(DEADLINE * 2):
            async with session.get(f"http://127.0.0.1:{turnout.proxy_port}/events") as response:
                assert response.status == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["x-turnout-backend"] == "legacy"
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    while b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        data = [
                            line[6:]
                            for line in event.decode().splitlines()
                            if line.startswith("data: ")
                        ]
                        got.extend(data)
                        index = len(got) - 1
                        sent_before_received.append(index)
                        received[index].set()
    assert got == ["event 0", "event 1", "event 2"]
    assert backend_stalled == [], "the client did not get an event before the next was sent"
    assert sent_before_received == [0, 1, 2]


async def test_plain_get_still_works_next_to_websockets(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    recorder = Recorder()
    backend = await aiohttp_server(recording_app("legacy", recorder))
    turnout = await start_turnout(str(backend.make_url("")), str(backend.make_url("")))
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{turnout.proxy_port}/plain", headers={"Upgrade": "h2c"}
        ) as response,
    ):
        assert response.status == 200
    assert not recorder.seen[0].has("upgrade")


async def test_a_websocket_firehose_to_a_slow_client_is_held_back_not_buffered(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    """The backend sends as fast as it can; the client reads nothing. Backpressure must
    stop the backend (its sends block) instead of the proxy buffering everything."""
    sent = [0]
    cap = 256 * 1024 * 1024

    async def firehose(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        chunk = b"x" * 65536
        while sent[0] < cap:
            await ws.send_bytes(chunk)
            sent[0] += len(chunk)
        return ws

    app = web.Application()
    app.router.add_get("/ws", firehose)
    backend = await aiohttp_server(app)
    url = str(backend.make_url(""))
    turnout = await start_turnout(url, url)
    reader, writer = await asyncio.open_connection("127.0.0.1", turnout.proxy_port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with asyncio.timeout(DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    # Stop reading. Wait until the backend's sending stalls (or runs away past 64 MiB).
    last, stable_since = -1, asyncio.get_running_loop().time()
    async with asyncio.timeout(20):
        while sent[0] < 64 * 1024 * 1024:
            now = asyncio.get_running_loop().time()
            if sent[0] != last:
                last, stable_since = sent[0], now
            elif now - stable_since > 0.5:
                break
            await asyncio.sleep(0.02)
    proxy_buffered = sum(
        conn.transport.get_write_buffer_size()
        for conn in turnout.service._connections
        if conn.transport is not None
    )
    writer.close()
    assert sent[0] < 64 * 1024 * 1024, f"backend pushed {sent[0]} bytes into the proxy"
    assert proxy_buffered < 1024 * 1024


async def test_a_half_close_in_a_tunnel_loses_no_bytes_either_way(
    start_turnout: StartTurnout,
) -> None:
    """The client sends 8 MiB and half-closes at once while the backend is slow to read:
    every byte must still reach the backend, and the backend's last words the client."""
    total = 8 * 1024 * 1024
    got = asyncio.get_running_loop().create_future()

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                     b"connection: upgrade\r\n\r\n")  # fmt: skip
        await writer.drain()
        await asyncio.sleep(0.5)  # let the proxy's buffer toward us fill up
        received = 0
        while chunk := await reader.read(65536):
            received += len(chunk)
        writer.write(b"bye after %d" % received)  # then our own half-close
        writer.write_eof()
        got.set_result(received)
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(slow_reader, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        turnout = await start_turnout(url, url)
        reader, writer = await asyncio.open_connection("127.0.0.1", turnout.proxy_port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n" + b"w" * total)  # fmt: skip
        writer.write_eof()
        async with asyncio.timeout(20):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            assert await got == total
            assert await reader.read() == b"bye after %d" % total
        writer.close()
    finally:
        server.close()
