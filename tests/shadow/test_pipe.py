"""Pipelined shadow GETs on the wire: a raw-socket backend sees exactly what the
``ShadowSender`` writes and answers request by request, as a test needs it to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.http.errors import UpstreamReset, UpstreamTimeout
from proxy.http.pool import BackendTarget, ConnectionPool
from proxy.shadow.pipe import MAX_DEPTH, MAX_PIPES, NoConnection, ShadowCall, ShadowSender
from tests.conftest import StartTurnout, wait_until
from tests.support.raw_backend import RawBackend

# (connection number, request number on it, path) -> the bytes to answer, or None to
# answer nothing (and "close" to close the connection without answering).
Policy = Callable[[int, int, str], bytes | str | None]


def answer(body: bytes, *, close: bool = False) -> bytes:
    connection = b"connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
        % (connection, len(body), body)
    )


def echo_path(_: int, __: int, path: str) -> bytes:
    return answer(b'{"path":"%s"}' % path.encode())


@dataclass
class PolicyServer:
    """Serves the connections of a ``RawBackend``: reads GET heads as they come and
    answers each as ``policy`` says, recording every read."""

    policy: Policy
    discard_rest: bool = False  # a broken pipelining server: drops what follows a request
    reads: list[tuple[int, bytes]] = field(default_factory=list)  # (connection, bytes read)
    closed: int = 0  # connections the client closed (or the backend hung up)
    raw: RawBackend | None = None

    @property
    def connections(self) -> int:
        assert self.raw is not None
        return self.raw.connections

    @property
    def port(self) -> int:
        assert self.raw is not None
        return int(self.raw.url.rsplit(":", 1)[1])

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        buffered, served = b"", 0
        try:
            while data := await reader.read(65536):
                self.reads.append((number, data))
                buffered += data
                while b"\r\n\r\n" in buffered:
                    head, buffered = buffered.split(b"\r\n\r\n", 1)
                    if self.discard_rest:
                        buffered = b""
                    path = head.split(b" ", 2)[1].decode()
                    reply = self.policy(number, served, path)
                    served += 1
                    if reply == "close":
                        return
                    if isinstance(reply, bytes):
                        writer.write(reply)
                        if b"connection: close" in reply:
                            await writer.drain()
                            return
        finally:
            self.closed += 1


StartBackend = Callable[..., Awaitable[PolicyServer]]


@pytest.fixture
async def backend_server() -> AsyncIterator[StartBackend]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(policy: Policy, *, discard_rest: bool = False) -> PolicyServer:
            server = PolicyServer(policy, discard_rest)
            server.raw = await stack.enter_async_context(RawBackend(server.serve))
            return server

        yield start


class Recorded(ShadowCall):
    """A call that keeps what became of it."""

    __slots__ = ("path", "result")

    def __init__(self, path: str, max_body: int = 1 << 20) -> None:
        super().__init__(f"GET {path} HTTP/1.1\r\nhost: backend\r\n\r\n".encode(), max_body)
        self.path = path
        self.result: tuple[int, bytes | None] | Exception | None = None

    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | None) -> None:
        assert self.result is None, "answered twice"
        self.result = (status, body)

    def fail(self, error: Exception) -> None:
        assert self.result is None, "ended twice"
        self.result = error


def sender_for(
    port: int, *, response_timeout: float = 5.0, max_connections: int = 64
) -> ShadowSender:
    pool = ConnectionPool("127.0.0.1", port, connect_timeout=2.0, max_connections=max_connections)
    return ShadowSender(BackendTarget("new", pool, 2.0, response_timeout, 5.0))


async def settle(calls: list[Recorded]) -> None:
    await wait_until(lambda: all(call.result is not None for call in calls))


async def send_all(sender: ShadowSender, calls: list[Recorded]) -> list[Recorded]:
    """Submit ``calls`` in one loop turn (one batch) and wait until each has ended."""
    for call in calls:
        sender.submit(call)
    await settle(calls)
    return calls


async def test_the_gets_of_one_loop_turn_go_out_in_one_write_and_get_their_own_answers(
    backend_server: StartBackend,
) -> None:
    backend = await backend_server(echo_path)
    sender = sender_for(backend.port)
    calls = await send_all(sender, [Recorded(f"/items/{i}") for i in range(10)])
    assert [call.result for call in calls] == [
        (200, b'{"path":"/items/%d"}' % i) for i in range(10)
    ]
    assert backend.connections == 1
    assert b"".join(data for _, data in backend.reads).count(b"GET /items/") == 10
    assert len(backend.reads) == 1  # one write, read in one piece on loopback
    # The next turn's batch reuses the idle connection.
    again = [Recorded("/again")]
    sender.submit(again[0])
    await settle(again)
    assert again[0].result == (200, b'{"path":"/again"}') and backend.connections == 1
    sender.close()


async def test_requests_behind_a_connection_close_answer_go_out_again_not_failed(
    backend_server: StartBackend,
) -> None:
    def close_after_two(connection: int, served: int, path: str) -> bytes:
        return answer(b'{"path":"%s"}' % path.encode(), close=connection == 0 and served == 1)

    backend = await backend_server(close_after_two)
    sender = sender_for(backend.port)
    calls = await send_all(sender, [Recorded(f"/items/{i}") for i in range(5)])
    assert [call.result for call in calls] == [(200, b'{"path":"/items/%d"}' % i) for i in range(5)]
    assert backend.connections == 2  # the three unread ones went out on a new connection
    sender.close()


async def test_an_answer_framed_by_the_connections_end_is_whole_and_the_rest_resent(
    backend_server: StartBackend,
) -> None:
    def unframed_first(connection: int, served: int, path: str) -> bytes:
        if connection == 0 and served == 0:  # HTTP/1.0 style: no length, ends at close
            return b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"unframed":true}'
        return echo_path(connection, served, path)

    backend = await backend_server(unframed_first)
    sender = sender_for(backend.port)
    calls = await send_all(sender, [Recorded("/first"), Recorded("/second")])
    assert [call.result for call in calls] == [
        (200, b'{"unframed":true}'),
        (200, b'{"path":"/second"}'),
    ]
    assert backend.connections == 2
    sender.close()


async def test_a_backend_that_closes_without_answering_fails_what_it_owes(
    backend_server: StartBackend,
) -> None:
    def answer_one_then_hang_up(_: int, served: int, path: str) -> bytes | str:
        return echo_path(0, served, path) if served == 0 else "close"

    backend = await backend_server(answer_one_then_hang_up)
    sender = sender_for(backend.port)
    calls = await send_all(sender, [Recorded(f"/items/{i}") for i in range(3)])
    assert calls[0].result == (200, b'{"path":"/items/0"}')
    assert all(isinstance(call.result, UpstreamReset) for call in calls[1:])
    sender.close()


async def test_a_silent_backend_times_out_every_request_it_owes(
    backend_server: StartBackend,
) -> None:
    backend = await backend_server(lambda *_: None)
    sender = sender_for(backend.port, response_timeout=0.3)
    calls = await send_all(sender, [Recorded(f"/items/{i}") for i in range(3)])
    assert all(isinstance(call.result, UpstreamTimeout) for call in calls)
    sender.close()


async def test_an_answer_over_the_cap_is_flagged_and_the_next_one_still_arrives(
    backend_server: StartBackend,
) -> None:
    def big_first(_: int, served: int, path: str) -> bytes:
        return answer(b"x" * 5000) if served == 0 else echo_path(0, served, path)

    backend = await backend_server(big_first)
    sender = sender_for(backend.port)
    calls = await send_all(
        sender, [Recorded("/big", max_body=1000), Recorded("/small", max_body=1000)]
    )
    assert calls[0].result == (200, None)
    assert calls[1].result == (200, b'{"path":"/small"}')
    assert backend.connections == 1
    sender.close()


async def test_no_free_connection_fails_the_call_instead_of_waiting(
    backend_server: StartBackend,
) -> None:
    backend = await backend_server(echo_path)
    sender = sender_for(backend.port, max_connections=1)
    assert sender.target.pool.take_slot()  # real traffic holds the only connection
    call = Recorded("/items/1")
    sender.submit(call)
    await settle([call])
    assert isinstance(call.result, NoConnection) and call.result.reason == "max_connections"
    assert backend.connections == 0
    sender.target.pool.give_slot()
    sender.close()


async def test_connections_are_capped_and_further_batches_queue_behind_them(
    backend_server: StartBackend,
) -> None:
    held: list[tuple[int, str]] = []

    def hold_first_answers(connection: int, served: int, path: str) -> bytes | None:
        held.append((connection, path))
        return None  # no answer: every connection stays busy

    backend = await backend_server(hold_first_answers)
    sender = sender_for(backend.port)
    calls = []
    for i in range(MAX_PIPES + 4):  # one batch per loop turn
        calls.append(call := Recorded(f"/items/{i}"))
        sender.submit(call)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await wait_until(lambda: len(held) == len(calls))
    assert backend.connections == MAX_PIPES  # the last batches went behind busy ones
    assert {connection for connection, _ in held} == set(range(MAX_PIPES))
    # Deeper than MAX_DEPTH behind every connection: refused as in flight, not queued.
    more = [Recorded(f"/more/{i}") for i in range(MAX_PIPES * MAX_DEPTH)]
    for call in more:
        sender.submit(call)
    await wait_until(lambda: any(call.result is not None for call in more))
    refused = [call for call in more if isinstance(call.result, NoConnection)]
    assert refused and all(call.result.reason == "in_flight" for call in refused)  # type: ignore[union-attr]
    assert all(call.result is None for call in more if call not in refused)  # queued, unanswered
    assert backend.connections == MAX_PIPES
    sender.close()


async def test_a_retired_sender_closes_its_idle_connections(backend_server: StartBackend) -> None:
    backend = await backend_server(echo_path)
    sender = sender_for(backend.port)
    call = Recorded("/items/1")
    sender.submit(call)
    await settle([call])
    assert backend.closed == 0  # kept alive for the next batch
    sender.retire()  # the backend changed in a reload
    await wait_until(lambda: backend.closed == 1)


async def test_closing_abandons_what_is_owed_and_closes_every_connection(
    backend_server: StartBackend,
) -> None:
    backend = await backend_server(lambda *_: None)  # never answers
    sender = sender_for(backend.port)
    calls = [Recorded(f"/items/{i}") for i in range(3)]
    for call in calls:
        sender.submit(call)
    await wait_until(lambda: backend.reads != [])  # sent, and owed
    sender.close()  # the proxy stops (after its drain)
    await wait_until(lambda: backend.closed == backend.connections == 1)
    assert [call.result for call in calls] == [None, None, None]  # abandoned, not failed


async def test_a_backend_that_mishandles_pipelining_loses_the_copies_behind_the_first(
    backend_server: StartBackend,
) -> None:
    backend = await backend_server(echo_path, discard_rest=True)
    sender = sender_for(backend.port, response_timeout=0.3)
    calls = await send_all(sender, [Recorded(f"/items/{i}") for i in range(3)])
    assert calls[0].result == (200, b'{"path":"/items/0"}')
    assert all(isinstance(call.result, UpstreamTimeout) for call in calls[1:])
    sender.close()


async def test_with_pipeline_off_each_copied_get_goes_alone_and_all_compare(
    backend_server: StartBackend, aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    async def legacy(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path}, dumps=lambda v: orjson.dumps(v).decode())

    new = await backend_server(echo_path, discard_rest=True)
    legacy_server = await aiohttp_server(_app(legacy))
    shadow = {"percent": 100, "pipeline": False}
    turnout = await start_turnout(
        str(legacy_server.make_url("")),
        f"http://127.0.0.1:{new.port}",
        flags={"main": {"percent": 0, "shadow": shadow}},
    )
    base = f"http://127.0.0.1:{turnout.proxy_port}"
    async with aiohttp.ClientSession() as session:

        async def get(i: int) -> int:
            async with session.get(f"{base}/items/{i}") as response:
                await response.read()
                return response.status

        assert await asyncio.gather(*(get(i) for i in range(20))) == [200] * 20
    await wait_until(lambda: turnout.stats.shadow.get(("main", "match"), 0) == 20)
    assert not turnout.stats.shadow.get(("main", "error"))


def _app(handler: Callable[[web.Request], Awaitable[web.Response]]) -> web.Application:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app
