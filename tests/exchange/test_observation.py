"""What the counters say about a request: the numbers the canary will judge on.

- A client that gives up is counted (499, as nginx does).
- Latency is the time to the response head, not the life of a stream.
- A fallback counts the failed attempt against the backend that failed.
- The response timer follows a shorter deadline on a reused connection.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.config.loader import read_config
from proxy.observe.stats import Series
from proxy.runtime.app import Turnout
from tests.conftest import BASE_CONFIG, StartTurnout, wait_until
from tests.support.backends import RawConnection, request_bytes
from tests.support.raw_backend import RawBackend


def _series(turnout: Turnout, backend: str) -> Series:
    return turnout.stats.series_for("/**", "main", backend)


async def test_a_client_that_gives_up_is_counted_as_499(start_turnout: StartTurnout) -> None:
    seen = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await backend.read_head(reader)
        seen.set()
        await asyncio.Event().wait()

    async with RawBackend(slow) as backend:
        turnout = await start_turnout(backend.url, backend.url)
        conn = await RawConnection.open(turnout.proxy_port)
        await conn.send(request_bytes("GET", "/slow"))
        await asyncio.wait_for(seen.wait(), 5)
        await conn.close()
        await wait_until(lambda: _series(turnout, "legacy").codes.get(("GET", 499)) == 1)


async def test_latency_of_a_stream_is_its_time_to_the_response_head(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for index in range(6):
            await response.write(f"data: {index}\n\n".encode())
            await asyncio.sleep(0.25)  # the stream's own pace: 1.5 s in all
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    server = await aiohttp_server(app)
    url = str(server.make_url(""))
    turnout = await start_turnout(url, url)
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{turnout.proxy_port}/events") as response,
    ):
        assert (await response.read()).count(b"data:") == 6
    assert time.monotonic() - started >= 1.4
    series = _series(turnout, "legacy")
    await wait_until(lambda: series.count == 1)
    assert series.total_seconds < 0.5


async def test_a_fallback_counts_the_failed_attempt_against_the_backend_that_failed(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    def answering(status: int) -> web.Application:
        async def answer(_: web.Request) -> web.Response:
            return web.Response(status=status, text=str(status))

        app = web.Application()
        app.router.add_get("/{tail:.*}", answer)
        return app

    apps = [await aiohttp_server(answering(status)) for status in (200, 503)]
    legacy, new = (str(server.make_url("")) for server in apps)
    turnout = await start_turnout(
        legacy, new, flags={"main": {"percent": 100, "fallback": {"on": [503]}}}
    )
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{turnout.proxy_port}/x") as response,
    ):
        assert response.status == 200
        assert response.headers["x-turnout-fallback"] == "1"
    assert _series(turnout, "new").codes == {("GET", 503): 1}
    assert _series(turnout, "legacy").codes == {("GET", 200): 1}


async def test_a_reload_that_shortens_the_response_timeout_applies_on_a_pooled_connection(
    tmp_path: Path,
) -> None:
    async def first_fast_then_hang(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
    ) -> None:
        await backend.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await backend.read_head(reader)
        await asyncio.Event().wait()

    def write(response: str) -> None:
        timeouts = {"connect": "1s", "response": response}
        data = {
            **BASE_CONFIG,
            "backends": {
                "legacy": {"url": backend.url, "timeouts": timeouts},
                "new": {"url": backend.url, "timeouts": timeouts},
            },
        }
        path.write_text(yaml.safe_dump(data))

    path = tmp_path / "turnout.yaml"
    async with RawBackend(first_fast_then_hang) as backend:
        write("8s")
        turnout = Turnout(read_config(str(path)))
        await turnout.start(admin=False)
        try:
            async with aiohttp.ClientSession() as session:
                proxy = f"http://127.0.0.1:{turnout.proxy_port}"
                async with session.get(proxy + "/first") as first:
                    assert first.status == 200
                write("0.3s")
                assert await turnout.reload()
                started = time.monotonic()
                async with session.get(proxy + "/second") as second:
                    assert second.status == 504
                assert time.monotonic() - started < 3  # not the 8 s armed before
                assert backend.connections == 1  # the same pooled connection
        finally:
            await turnout.stop()
