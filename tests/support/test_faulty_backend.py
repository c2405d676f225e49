"""The fault-injecting test backend does what each fault says, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.faulty_backend import Fault, FaultyBackend

DEADLINE = 3.0


# -- helpers -----------------------------------------------------------------------
def req(
    method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Client:
    """One raw HTTP/1.1 connection; every read has a deadline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Client:
        async with asyncio.timeout(DEADLINE):
            return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self) -> tuple[int, dict[str, str]]:
        async with asyncio.timeout(DEADLINE):
            raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines if line)
        return int(status_line.split(" ")[1]), {k.lower(): v.strip() for k, _, v in fields}

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = await self.head()
        async with asyncio.timeout(DEADLINE):
            body = await self.reader.readexactly(int(headers["content-length"]))
        return status, headers, body

    async def rest(self) -> bytes:
        """Everything until the peer closes (EOF)."""
        async with asyncio.timeout(DEADLINE):
            return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def get(backend: FaultyBackend, path: str = "/x", method: str = "GET") -> Any:
    client = await Client.open(backend.port)
    await client.send(req(method, path))
    status, _, body = await client.response()
    await client.close()
    return status, json.loads(body)


async def wait_until_no_connections(backend: FaultyBackend) -> None:
    async with asyncio.timeout(DEADLINE):
        await backend.wait_idle()


@pytest.fixture
async def backend() -> AsyncIterator[FaultyBackend]:
    """A started backend; at the end: stopped, no task left, no loop error logged."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    before = asyncio.all_tasks()
    started = FaultyBackend("new")
    await started.start()
    yield started
    await started.stop()
    gc.collect()  # a failed task that nobody awaited is reported when collected
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
    assert errors == []
    loop.set_exception_handler(None)


# -- normal answers, recording ---------------------------------------------------------
async def test_none_answers_json_with_keep_alive(backend: FaultyBackend) -> None:
    client = await Client.open(backend.port)
    for path in ("/a", "/b?q=1"):
        await client.send(req("GET", path))
        status, headers, body = await client.response()
        assert status == 200 and headers["connection"] == "keep-alive"
        assert json.loads(body) == {"backend": "new", "method": "GET", "path": path}
    await client.close()
    assert backend.connections_accepted == 1
    assert backend.url == f"http://127.0.0.1:{backend.port}"
    async with aiohttp.ClientSession() as session, session.get(backend.url + "/c") as resp:
        assert resp.status == 200 and (await resp.json())["path"] == "/c"


async def test_head_has_no_body_and_connection_close_is_honoured(
    backend: FaultyBackend,
) -> None:
    client = await Client.open(backend.port)
    await client.send(req("HEAD", "/h"))
    status, headers = await client.head()
    assert status == 200 and int(headers["content-length"]) > 0
    await client.send(req("GET", "/g", headers=(("Connection", "close"),)))
    status, headers, body = await client.response()  # the HEAD left no body behind
    assert (status, headers["connection"], json.loads(body)["path"]) == (200, "close", "/g")
    assert await client.rest() == b""
    await client.close()


async def test_requests_are_recorded_with_bodies(backend: FaultyBackend) -> None:
    client = await Client.open(backend.port)
    await client.send(req("POST", "/items?x=1", b'{"a": 1}', (("X-Trace", "t1"),)))
    assert (await client.response())[0] == 200
    chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
    await client.send(req("PUT", "/items/2", headers=(("Transfer-Encoding", "chunked"),)))
    await client.send(chunked)
    assert (await client.response())[0] == 200
    await client.close()
    post, put = backend.requests
    assert (post.method, post.path, post.body, post.body_complete) == (
        "POST",
        "/items?x=1",
        b'{"a": 1}',
        True,
    )
    assert post.headers["x-trace"] == "t1" and post.headers["host"] == "test"
    assert put.body == b"hello world" and put.at >= post.at
    assert backend.seen("post", "/items") == [post]
    assert backend.seen(path="/items/2") == [put]
    assert backend.seen("GET") == []


async def test_malformed_request_gets_400(backend: FaultyBackend) -> None:
    client = await Client.open(backend.port)
    await client.send(b"NONSENSE\r\n\r\n")
    assert (await client.head())[0] == 400
    assert await client.rest() == b""
    await client.close()


# -- REFUSE ------------------------------------------------------------------------------
async def test_refuse_then_reopen_on_the_same_port(backend: FaultyBackend) -> None:
    port = backend.port
    idle = await Client.open(port)
    backend.set_fault(Fault.REFUSE)
    await backend.apply()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    assert await idle.rest() == b""  # open connections are closed too, like a crash
    await idle.close()
    backend.set_fault(Fault.NONE)
    await backend.apply()
    assert backend.port == port
    assert await get(backend) == (200, {"backend": "new", "method": "GET", "path": "/x"})


async def test_quick_flips_end_in_the_last_state(backend: FaultyBackend) -> None:
    port = backend.port
    for _ in range(5):
        backend.set_fault(Fault.REFUSE)
        backend.set_fault(Fault.NONE)
    backend.set_fault(Fault.REFUSE)
    await backend.apply()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    backend.set_fault(Fault.NONE)
    backend.set_fault(Fault.REFUSE)
    backend.set_fault(Fault.STATUS, status=502)
    await backend.apply()
    assert backend.port == port
    assert (await get(backend))[0] == 502


# -- faults on the answer ----------------------------------------------------------------
async def test_hang_never_answers(backend: FaultyBackend) -> None:
    backend.set_fault(Fault.HANG)
    client = await Client.open(backend.port)
    await client.send(req("POST", "/slow", b"abc"))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await client.reader.read(1)
    assert backend.seen("POST", "/slow")[0].body == b"abc"
    await client.close()


async def test_reset_mid_body_resets_after_some_body_bytes(backend: FaultyBackend) -> None:
    backend.set_fault(Fault.RESET_MID_BODY)
    loop = asyncio.get_running_loop()
    received = b""
    with socket.socket() as sock:
        sock.setblocking(False)
        async with asyncio.timeout(DEADLINE):
            await loop.sock_connect(sock, ("127.0.0.1", backend.port))
            await loop.sock_sendall(sock, req("GET", "/big"))
            with pytest.raises(ConnectionResetError):
                while chunk := await loop.sock_recv(sock, 65536):
                    received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Content-Length: 100000" in head
    assert 0 < len(body) < 100_000

    async with aiohttp.ClientSession() as session:
        async with session.get(backend.url + "/big") as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()


async def test_close_after_headers_sends_fin_without_body(backend: FaultyBackend) -> None:
    backend.set_fault(Fault.CLOSE_AFTER_HEADERS)
    client = await Client.open(backend.port)
    await client.send(req("GET", "/x"))
    status, headers = await client.head()
    assert (status, headers["content-length"]) == (200, "100")
    assert await client.rest() == b""  # clean EOF, not a reset
    await client.close()


async def test_drip_sends_one_byte_per_second(backend: FaultyBackend) -> None:
    backend.set_fault(Fault.DRIP)
    client = await Client.open(backend.port)
    await client.send(req("GET", "/x"))
    status, headers = await client.head()
    assert (status, headers["content-length"]) == (200, "20")
    start = time.monotonic()
    arrivals = []
    for _ in range(2):
        async with asyncio.timeout(DEADLINE):
            assert len(await client.reader.read(100)) == 1
        arrivals.append(time.monotonic() - start)
    assert 0.8 < arrivals[0] < 1.5
    assert 0.8 < arrivals[1] - arrivals[0] < 1.5
    await client.close()


async def test_bad_content_length(backend: FaultyBackend) -> None:
    backend.set_fault(Fault.BAD_CONTENT_LENGTH)
    client = await Client.open(backend.port)
    await client.send(req("GET", "/x"))
    data = await client.rest()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nContent-Length: abc\r\n" in data
    await client.close()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientResponseError):
            await session.get(backend.url + "/x")


async def test_garbage_status(backend: FaultyBackend) -> None:
    backend.set_fault(Fault.GARBAGE_STATUS)
    client = await Client.open(backend.port)
    await client.send(req("GET", "/x"))
    assert await client.rest() == b"HTTP/1.1 abc WHAT\r\n\r\n"
    await client.close()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientResponseError):
            await session.get(backend.url + "/x")


async def test_status_only_for_the_selected_method_and_path(backend: FaultyBackend) -> None:
    backend.set_fault(Fault.STATUS, status=503, methods={"post"}, paths={"/api/x"})
    client = await Client.open(backend.port)
    await client.send(req("POST", "/api/x?q=1", b"{}"))
    status, headers, body = await client.response()
    assert status == 503 and headers["connection"] == "keep-alive"
    assert json.loads(body)["status"] == 503
    await client.send(req("GET", "/api/x"))  # same connection: kept alive
    assert (await client.response())[0] == 200
    await client.close()
    assert (await get(backend, "/api/y", "POST"))[0] == 200
    backend.set_fault(Fault.STATUS, status=500)
    assert (await get(backend, "/anything"))[0] == 500


async def test_health_switch_is_independent_of_the_fault(backend: FaultyBackend) -> None:
    assert await get(backend, "/health") == (200, {"backend": "new", "healthy": True})
    backend.set_fault(Fault.HANG)
    backend.set_health(False)
    assert (await get(backend, "/health"))[0] == 503
    backend.set_health(True)
    assert (await get(backend, "/health?probe=1"))[0] == 200
    backend.set_fault(Fault.REFUSE)
    await backend.apply()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", backend.port)


# -- robustness, stop --------------------------------------------------------------------
@pytest.mark.parametrize(
    "partial",
    [
        b"GET /x HT",
        b"GET /x HTTP/1.1\r\nHost: te",
        req("POST", "/x", b"0123456789")[:-4],
        req("POST", "/x", headers=(("Transfer-Encoding", "chunked"),)) + b"a\r\nabc",
    ],
)
async def test_client_leaving_mid_request_is_harmless(
    backend: FaultyBackend, partial: bytes
) -> None:
    client = await Client.open(backend.port)
    await client.send(partial)
    await client.close()
    await wait_until_no_connections(backend)


async def test_client_leaving_mid_hang_or_drip_is_harmless(backend: FaultyBackend) -> None:
    for fault in (Fault.HANG, Fault.DRIP, Fault.RESET_MID_BODY):
        backend.set_fault(fault)
        client = await Client.open(backend.port)
        await client.send(req("GET", "/x"))
        async with asyncio.timeout(DEADLINE):
            await backend.wait_seen(path="/x")
        backend.requests.clear()
        await client.close()
        await wait_until_no_connections(backend)


async def test_stop_closes_every_socket_and_task() -> None:
    before = asyncio.all_tasks()
    backend = FaultyBackend("legacy")
    await backend.start()
    port = backend.port
    idle = await Client.open(port)
    await idle.send(req("GET", "/x"))
    await idle.response()
    backend.set_fault(Fault.HANG, paths={"/hang"})
    hanging = await Client.open(port)
    await hanging.send(req("GET", "/hang"))
    async with asyncio.timeout(DEADLINE):
        await backend.wait_seen(path="/hang")
    await backend.stop()
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
    assert backend.open_connections == 0
    for client in (idle, hanging):
        with contextlib.suppress(ConnectionResetError):
            assert await client.rest() == b""
        await client.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    with socket.socket() as sock:  # nothing listens on the port any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
