"""``backends.NAME.max_connections``: beyond it requests wait for a free connection, up
to the connect timeout, then get 503 ``backend_overloaded``; no slot ever leaks.

The backend holds each ``/hold/...`` request until the test lets it go, so the
number of connections in use is exactly what the test makes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.http.pool import ConnectionGate, ConnectionPool
from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout, wait_until
from tests.support.backends import RawConnection, Recorder, recording_app, request_bytes, scrape
from tests.support.faulty_backend import Fault, FaultyBackend

FALLBACK_ALL = {"on": ["connect_error", "timeout", "reset", 502, 503, 504], "budget_percent": 100}


class HoldingBackend:
    """Answers ``/hold/*`` only when released (in arrival order); anything else at once."""

    def __init__(self) -> None:
        self.held: list[asyncio.Event] = []
        self.answered = 0

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            if request.path.startswith("/hold/"):
                event = asyncio.Event()
                self.held.append(event)
                await event.wait()
            self.answered += 1
            return web.json_response({"backend": "new", "path": request.path})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    def release(self, count: int = 1) -> None:
        waiting = [event for event in self.held if not event.is_set()]
        for event in waiting[:count]:
            event.set()

    def release_all(self) -> None:
        self.release(len(self.held))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def holding(aiohttp_server: AiohttpServer) -> AsyncIterator[tuple[HoldingBackend, str]]:
    backend = HoldingBackend()
    server = await aiohttp_server(backend.app())
    yield backend, f"http://127.0.0.1:{server.port}"
    backend.release_all()  # let the server shut down without hanging handlers


async def start_capped(
    start_turnout: StartTurnout,
    legacy_url: str,
    new_url: str,
    *,
    max_connections: int,
    connect: str = "5s",
    **new_extra: Any,
) -> Turnout:
    """Every request of flag `main` goes to `new`, with a fallback policy to legacy."""
    new = {
        "url": new_url,
        "timeouts": {"connect": connect, "response": "10s"},
        "max_connections": max_connections,
        **new_extra,
    }
    return await start_turnout(
        legacy_url,
        new_url,
        flags={"main": {"percent": 100, "fallback": FALLBACK_ALL}},
        backends={"new": new},
    )


def new_pool(turnout: Turnout) -> ConnectionPool:
    return turnout.table.backends[1].pool


async def get(
    session: aiohttp.ClientSession, turnout: Turnout, path: str
) -> tuple[int, dict[str, str], Any]:
    async with session.get(f"http://127.0.0.1:{turnout.proxy_port}{path}") as response:
        return response.status, dict(response.headers), await response.json()


async def test_a_request_beyond_the_cap_waits_for_a_free_connection(
    holding: tuple[HoldingBackend, str],
    aiohttp_server: AiohttpServer,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend, url = holding
    legacy = await aiohttp_server(recording_app("legacy"))
    turnout = await start_capped(
        start_turnout, f"http://127.0.0.1:{legacy.port}", url, max_connections=2
    )
    pool = new_pool(turnout)
    requests = [asyncio.create_task(get(session, turnout, f"/hold/{i}")) for i in range(3)]
    await wait_until(lambda: len(backend.held) == 2 and pool.waiting == 1)
    assert pool.in_use == 2
    backend.release()  # the first answer frees its connection for the waiting request
    await wait_until(lambda: len(backend.held) == 3)
    assert pool.waiting == 0
    backend.release_all()
    async with asyncio.timeout(5):
        answers = await asyncio.gather(*requests)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert pool.opened == 2  # the third request reused the first one's connection
    await wait_until(lambda: pool.in_use == 0)


async def test_beyond_the_cap_past_the_connect_timeout_is_a_503_backend_overloaded(
    holding: tuple[HoldingBackend, str],
    aiohttp_server: AiohttpServer,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend, url = holding
    legacy_seen = Recorder()
    legacy = await aiohttp_server(recording_app("legacy", legacy_seen))
    turnout = await start_capped(
        start_turnout,
        f"http://127.0.0.1:{legacy.port}",
        url,
        max_connections=1,
        connect="300ms",
        outlier_detection={"consecutive_failures": 1},
    )
    pool = new_pool(turnout)
    held = asyncio.create_task(get(session, turnout, "/hold/1"))
    await wait_until(lambda: len(backend.held) == 1)
    started = time.monotonic()
    status, headers, body = await get(session, turnout, "/api/x")
    waited = time.monotonic() - started
    assert status == 503
    assert body["error"]["code"] == "backend_overloaded"
    assert "max_connections" in body["error"]["message"]
    assert 0.25 <= waited < 4.0  # it waited for the connect timeout, then gave up
    # Not replayed on legacy, not a sick backend, not an upstream error.
    assert headers["x-turnout-backend"] == "new" and "x-turnout-fallback" not in headers
    assert legacy_seen.seen == []
    assert turnout.health.up()["new"]
    metrics = await scrape(turnout.admin_port)
    assert 'turnout_upstream_errors_total{backend="new"' not in metrics
    backend.release_all()
    async with asyncio.timeout(5):
        assert (await held)[0] == 200
    await wait_until(lambda: pool.in_use == 0)
    status, _, _ = await get(session, turnout, "/api/x")
    assert status == 200


async def test_a_client_that_leaves_while_waiting_takes_no_slot_with_it(
    holding: tuple[HoldingBackend, str],
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend, url = holding
    turnout = await start_capped(start_turnout, url, url, max_connections=1)
    pool = new_pool(turnout)
    held = asyncio.create_task(get(session, turnout, "/hold/1"))
    await wait_until(lambda: len(backend.held) == 1)
    raw = await RawConnection.open(turnout.proxy_port)
    await raw.send(request_bytes("GET", "/api/abandoned"))
    await wait_until(lambda: pool.waiting == 1)
    await raw.close()
    await wait_until(lambda: pool.waiting == 0)
    backend.release_all()
    async with asyncio.timeout(5):
        assert (await held)[0] == 200
    await wait_until(lambda: pool.in_use == 0)
    status, _, body = await get(session, turnout, "/api/next")
    assert (status, body["path"]) == (200, "/api/next")
    assert backend.answered == 2  # the abandoned request never reached the backend


async def outcome(session: aiohttp.ClientSession, url: str) -> str:
    """The status the client got, or "cut" when the body was cut short."""
    try:
        async with session.get(url) as response:
            await response.read()
            return str(response.status)
    except aiohttp.ClientPayloadError:
        return "cut"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.GARBAGE_STATUS, "502"),
        (Fault.CLOSE_AFTER_HEADERS, "cut"),
        (Fault.RESET_MID_BODY, "cut"),
        (Fault.HANG, "504"),
    ],
)
async def test_failed_connections_give_their_slot_back(
    fault: Fault, expected: str, start_turnout: StartTurnout, session: aiohttp.ClientSession
) -> None:
    """With one connection allowed, a leaked slot would turn the next request into a 503."""
    backend = FaultyBackend("new")
    await backend.start()
    try:
        turnout = await start_turnout(
            backend.url,
            backend.url,
            flags={"main": {"percent": 100}},
            backends={
                "new": {
                    "url": backend.url,
                    "timeouts": {"connect": "300ms", "response": "300ms"},
                    "max_connections": 1,
                    "outlier_detection": {"consecutive_failures": 100},
                }
            },
        )
        pool = new_pool(turnout)
        url = f"http://127.0.0.1:{turnout.proxy_port}/api/x"
        backend.set_fault(fault)
        assert [await outcome(session, url) for _ in range(3)] == [expected] * 3
        await wait_until(lambda: pool.in_use == 0)
        backend.set_fault(Fault.REFUSE)  # also closes the connections open to it
        await backend.apply()
        backend.set_fault(Fault.NONE)
        await backend.apply()
        assert await outcome(session, url) == "200"
        await wait_until(lambda: pool.in_use == 0)
    finally:
        await backend.stop()


async def test_the_gate_is_first_come_first_served_and_passes_on_a_slot_given_up() -> None:
    gate = ConnectionGate(1)
    assert gate.try_enter()
    first = asyncio.create_task(gate.wait())
    second = asyncio.create_task(gate.wait())
    await wait_until(lambda: gate.waiting == 2)
    gate.leave()  # the slot goes to `first`, not to whoever asks next
    assert not gate.try_enter()
    first.cancel()  # `first` gives up before it ran: the slot it was handed moves on
    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(5):
        await second
    assert (gate.in_use, gate.waiting) == (1, 0)
    gate.leave()
    assert gate.in_use == 0
