"""Uploads, early answers and stale pooled connections, through a real Turnout.

- An upload is bounded by idle timeouts, not by the response timeout: that one
  starts when the request body has gone up.
- A backend that answers before reading the whole body (401, 413) gets its
  answer to the client; that is not a backend failure.
- A pooled connection the backend closed just as a request was written to it
  (the keep-alive race) is retried once on a fresh connection for a request
  that is safe to repeat; not a health failure either.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from tests.conftest import StartTurnout
from tests.support.backends import RawConnection, RawResponse
from tests.support.raw_backend import RawBackend

FIVE_MIB = 5 * 1024 * 1024
EJECT_AT_FIRST_FAILURE = {"consecutive_failures": 1, "base_ejection_time": "30s"}


def _backend(url: str, response: str = "5s", **extra: object) -> dict[str, object]:
    return {"url": url, "timeouts": {"connect": "1s", "response": response}, **extra}


def _length_app() -> web.Application:
    async def length(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    app = web.Application(client_max_size=2 * FIVE_MIB)
    app.router.add_route("*", "/{tail:.*}", length)
    return app


async def _paced_upload(
    port: int, total: int, seconds: float, path: str = "/upload"
) -> tuple[RawResponse, RawConnection, asyncio.Task[int]]:
    """POST ``total`` bytes spread over ``seconds``, reading the answer while sending.
    Returns the answer, the connection and the sender task (bytes it managed to send)."""
    conn = await RawConnection.open(port)
    await conn.send(
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {total}\r\n\r\n".encode()
    )
    pieces = 50
    piece = b"x" * (total // pieces)

    async def send_body() -> int:
        sent = 0
        with contextlib.suppress(ConnectionError):
            for index in range(pieces):
                size = len(piece) if index < pieces - 1 else total - sent
                await conn.send(piece[:size] if size <= len(piece) else b"x" * size)
                sent += size
                await asyncio.sleep(seconds / pieces)  # pacing the upload, not waiting on state
        return sent

    sender = asyncio.create_task(send_body())
    response = await conn.response(timeout=seconds + 10)
    return response, conn, sender


async def test_a_slow_upload_outlives_the_response_and_request_timeouts(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    legacy = await aiohttp_server(_length_app())
    url = str(legacy.make_url(""))
    turnout = await start_turnout(
        url, url, request_timeout="2s", backends={"legacy": _backend(url, response="1s")}
    )
    response, conn, sender = await _paced_upload(turnout.proxy_port, FIVE_MIB, seconds=3)
    assert await sender == FIVE_MIB
    assert (response.status, response.body) == (200, str(FIVE_MIB).encode())
    assert turnout.stats.upstream_errors == {}
    await conn.close()


async def test_the_response_timeout_still_bounds_the_wait_after_the_body(
    start_turnout: StartTurnout,
) -> None:
    async def read_body_then_hang(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
    ) -> None:
        await backend.read_head(reader)
        await reader.readexactly(1000)
        await asyncio.Event().wait()

    async with RawBackend(read_body_then_hang) as backend:
        turnout = await start_turnout(
            backend.url, backend.url, backends={"legacy": _backend(backend.url, response="0.5s")}
        )
        started = time.monotonic()
        conn = await RawConnection.open(turnout.proxy_port)
        await conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"y" * 1000)
        response = await conn.response()
        assert response.status == 504
        assert time.monotonic() - started < 3
        await conn.close()
    assert turnout.stats.upstream_errors == {("legacy", "timeout"): 1}


async def test_an_early_401_mid_upload_reaches_the_client_and_ejects_nothing(
    start_turnout: StartTurnout,
) -> None:
    async def refuse_uploads(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
    ) -> None:
        while True:
            head = await backend.read_head(reader)
            if head.startswith(b"POST"):
                writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 12\r\n\r\nunauthorized")
                await writer.drain()
                return  # closes without reading the body, as a real server may
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    async with RawBackend(refuse_uploads) as backend:
        legacy = _backend(backend.url, outlier_detection=EJECT_AT_FIRST_FAILURE)
        turnout = await start_turnout(backend.url, backend.url, backends={"legacy": legacy})
        response, conn, sender = await _paced_upload(turnout.proxy_port, FIVE_MIB, seconds=2)
        assert (response.status, response.body) == (401, b"unauthorized")
        assert response.header("x-turnout-backend") == "legacy"
        # The body was not read: the connection cannot carry another request.
        assert await conn.closed_by_peer()
        await sender
        await conn.close()
        assert turnout.stats.upstream_errors == {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{turnout.proxy_port}/after") as after,
        ):
            assert after.status == 200
            assert after.headers["x-turnout-backend"] == "legacy"  # not ejected


async def test_an_early_413_with_a_small_body_is_relayed_too(start_turnout: StartTurnout) -> None:
    async def too_large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig")
        await writer.drain()

    async with RawBackend(too_large) as backend:
        turnout = await start_turnout(backend.url, backend.url)
        response, conn, sender = await _paced_upload(turnout.proxy_port, 512 * 1024, seconds=1)
        assert (response.status, response.body) == (413, b"big")
        await sender
        await conn.close()
    assert turnout.stats.upstream_errors == {}


async def test_four_gets_over_a_pool_whose_backend_closes_every_reused_connection(
    start_turnout: StartTurnout,
) -> None:
    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
    ) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await backend.read_head(reader)  # the next request on this connection: hang up

    async with RawBackend(one_answer_per_connection) as backend:
        legacy = _backend(backend.url, outlier_detection=EJECT_AT_FIRST_FAILURE)
        turnout = await start_turnout(backend.url, backend.url, backends={"legacy": legacy})
        async with aiohttp.ClientSession() as session:
            for index in range(4):
                async with session.get(f"http://127.0.0.1:{turnout.proxy_port}/{index}") as got:
                    assert got.status == 200, await got.text()
                    assert got.headers["x-turnout-backend"] == "legacy"
                    assert await got.read() == b"ok"
        assert turnout.stats.upstream_errors == {}
        assert turnout.health.backends[0].ejections == 0
        assert backend.connections == 4


async def test_a_post_on_a_stale_connection_is_never_sent_twice(
    start_turnout: StartTurnout,
) -> None:
    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
    ) -> None:
        await backend.read_head(reader)
        await reader.readexactly(4)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await backend.read_head(reader)

    async with RawBackend(one_answer_per_connection) as backend:
        turnout = await start_turnout(backend.url, backend.url)
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{turnout.proxy_port}/write"
            async with session.post(url, data=b"data") as first:
                assert first.status == 200
            async with session.post(url, data=b"data") as second:
                assert second.status == 502
        assert backend.requests_seen == 2  # the second POST reached it once, never again


async def test_a_backend_that_stops_reading_the_body_is_a_timeout_not_a_reset(
    start_turnout: StartTurnout,
) -> None:
    async def never_read(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
    ) -> None:
        await backend.read_head(reader)
        await asyncio.Event().wait()  # reads nothing more, answers nothing

    async with RawBackend(never_read) as backend:
        legacy = {
            "url": backend.url,
            "timeouts": {"connect": "1s", "response": "30s", "idle": "0.5s"},
        }
        turnout = await start_turnout(backend.url, backend.url, backends={"legacy": legacy})
        total = 64 * 1024 * 1024  # far more than the socket buffers between us hold
        conn = await RawConnection.open(turnout.proxy_port)
        await conn.send(f"PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n".encode())

        async def send_body() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(total // (1024 * 1024)):
                    await conn.send(b"z" * (1024 * 1024))

        sender = asyncio.create_task(send_body())
        response = await conn.response(timeout=10)
        assert response.status == 504
        assert turnout.stats.upstream_errors == {("legacy", "timeout"): 1}
        sender.cancel()
        await conn.close()


async def test_an_early_answer_is_relayed_while_the_client_is_paused_mid_body(
    start_turnout: StartTurnout,
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await backend.read_head(reader)
        await reader.readexactly(1000)  # the first bytes, then the answer
        writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope")
        await writer.drain()

    async with RawBackend(refuse) as backend:
        turnout = await start_turnout(backend.url, backend.url)
        conn = await RawConnection.open(turnout.proxy_port)
        head = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n"
        await conn.send(head + b"a" * 100_000)  # ...and nothing more for now
        started = time.monotonic()
        response = await conn.response(timeout=10)
        assert (response.status, response.body) == (401, b"nope")
        assert time.monotonic() - started < 3  # not the client's 60 s idle timeout
        await conn.close()
