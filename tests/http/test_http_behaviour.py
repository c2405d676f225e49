"""HTTP behaviour of the proxy (SPEC §4-§5), end to end over 127.0.0.1.

Real backends (pytest-aiohttp's ``aiohttp_server``) record what they receive;
clients are aiohttp sessions or hand-written bytes on a socket. Every wait has a
deadline, so a broken proxy fails a test rather than hanging it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout, wait_until
from tests.support.backends import (
    RawConnection,
    Recorder,
    recording_app,
    request_bytes,
    sample,
    scrape,
    unused_port,
)

MIB = 1024 * 1024
CHUNK = 64 * 1024
DEADLINE = 5.0

HOP_BY_HOP = (
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
)


@dataclass
class Pair:
    """Two recording backends behind a running Turnout."""

    turnout: Turnout
    legacy: Recorder
    new: Recorder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.turnout.proxy_port}"

    @property
    def port(self) -> int:
        return self.turnout.proxy_port

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.turnout.admin_port}"


async def start_pair(
    aiohttp_server: AiohttpServer,
    start_turnout: StartTurnout,
    legacy_app: web.Application | None = None,
    new_app: web.Application | None = None,
    **overrides: Any,
) -> Pair:
    legacy, new = Recorder(), Recorder()
    legacy_server = await aiohttp_server(legacy_app or recording_app("legacy", legacy))
    new_server = await aiohttp_server(new_app or recording_app("new", new))
    turnout = await start_turnout(
        str(legacy_server.make_url("")), str(new_server.make_url("")), **overrides
    )
    return Pair(turnout, legacy, new)


def app_with(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


# -- 1. hop-by-hop headers --------------------------------------------------------
async def test_hop_by_hop_request_headers_are_not_forwarded(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout)
    conn = await RawConnection.open(pair.port)
    try:
        await conn.send(
            request_bytes(
                "GET",
                "/hop",
                [
                    ("Connection", "X-Secret"),  # names only X-Secret: the rest are dropped by name
                    ("X-Secret", "1"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Connection", "keep-alive"),
                    ("TE", "trailers"),
                    ("Trailer", "X-Checksum"),
                    ("Upgrade", "foo/1"),
                    ("X-End-To-End", "kept"),
                    ("Accept", "application/json"),
                ],
            )
        )
        response = await conn.response()
    finally:
        await conn.close()
    assert response.status == 200
    [seen] = pair.legacy.seen
    for name in (*HOP_BY_HOP, "x-secret"):
        assert not seen.has(name), f"{name} reached the backend: {seen.headers}"
    assert seen.values("x-end-to-end") == ["kept"]
    assert seen.values("accept") == ["application/json"]


async def test_names_in_a_repeated_connection_header_are_not_forwarded(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout)
    conn = await RawConnection.open(pair.port)
    try:
        await conn.send(
            request_bytes(
                "GET",
                "/hop",
                [("Connection", "keep-alive"), ("Connection", "X-Secret"), ("X-Secret", "1")],
            )
        )
        response = await conn.response()
    finally:
        await conn.close()
    assert response.status == 200
    [seen] = pair.legacy.seen
    assert not seen.has("x-secret"), seen.headers


async def test_hop_by_hop_response_headers_do_not_reach_the_client(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    async def handler(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers["Connection"] = "X-Backend-Secret"
        response.headers["X-Backend-Secret"] = "s3cr3t"
        response.headers["Keep-Alive"] = "timeout=5"
        response.headers["Proxy-Connection"] = "keep-alive"
        response.headers["TE"] = "trailers"
        response.headers["Trailer"] = "X-Checksum"
        response.headers["Upgrade"] = "foo/1"
        response.headers["X-End-To-End"] = "kept"
        response.headers["Cache-Control"] = "no-store"
        return response

    pair = await start_pair(aiohttp_server, start_turnout, legacy_app=app_with(handler))
    conn = await RawConnection.open(pair.port)
    try:
        await conn.send(request_bytes("GET", "/"))
        response = await conn.response()
    finally:
        await conn.close()
    assert response.status == 200
    assert response.body == b"ok"
    names = {name.lower() for name, _ in response.headers}
    for name in ("x-backend-secret", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
        assert name not in names, f"{name} reached the client: {response.headers}"
    assert "x-backend-secret" not in (response.header("connection") or "").lower()
    assert response.values("x-end-to-end") == ["kept"]
    assert response.values("cache-control") == ["no-store"]


# -- 2. X-Forwarded-* and Host -------------------------------------------------------
async def test_forwarded_headers_and_host(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout)
    conn = await RawConnection.open(pair.port)
    try:
        plain = b"GET /a HTTP/1.1\r\nHost: shop.example.com:8443\r\n\r\n"
        await conn.send(plain)
        assert (await conn.response()).status == 200
        await conn.send(
            b"GET /b HTTP/1.1\r\nHost: shop.example.com\r\n"
            b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n"
            b"X-Forwarded-Host: spoofed.example\r\n\r\n"
        )
        assert (await conn.response()).status == 200
    finally:
        await conn.close()
    first, second = pair.legacy.seen
    assert first.values("host") == ["shop.example.com:8443"]
    assert first.values("x-forwarded-for") == ["127.0.0.1"]
    assert first.values("x-forwarded-proto") == ["http"]
    assert first.values("x-forwarded-host") == ["shop.example.com:8443"]

    assert second.values("host") == ["shop.example.com"]
    assert second.values("x-forwarded-for") == ["1.2.3.4, 127.0.0.1"]
    assert second.values("x-forwarded-proto") == ["https"]  # a TLS LB in front said so
    assert second.values("x-forwarded-host") == ["shop.example.com"]  # never the client's claim


# -- 3. repeated headers -------------------------------------------------------------------
async def test_repeated_headers_survive_both_ways(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    recorder = Recorder()

    async def handler(request: web.Request) -> web.Response:
        await recorder.record(request)
        response = web.Response(text="cookies")
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
        return response

    pair = await start_pair(aiohttp_server, start_turnout, legacy_app=app_with(handler))
    conn = await RawConnection.open(pair.port)
    try:
        await conn.send(
            request_bytes(
                "GET", "/", [("X-Multi", "one"), ("Accept", "text/plain"), ("X-Multi", "two")]
            )
        )
        response = await conn.response()
    finally:
        await conn.close()
    assert response.values("set-cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    [seen] = recorder.seen
    assert seen.values("x-multi") == ["one", "two"]


# -- 4. HEAD, 204, 304 and keep-alive -------------------------------------------------
async def test_head_204_304_carry_no_body_and_keep_the_connections_in_sync(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    recorder = Recorder()
    payload = {path: os.urandom(3000 + i * 777) for i, path in enumerate(("/x", "/y"))}

    async def handler(request: web.Request) -> web.StreamResponse:
        await recorder.record(request)
        if request.path == "/204":
            return web.Response(status=204, headers={"X-Kind": "no-content"})
        if request.path == "/304":
            return web.Response(status=304, headers={"ETag": '"v1"'})
        body = payload[request.path]
        return web.Response(body=body, headers={"X-Path": request.path})

    pair = await start_pair(aiohttp_server, start_turnout, legacy_app=app_with(handler))
    conn = await RawConnection.open(pair.port)
    sequence = [
        ("GET", "/x"),
        ("HEAD", "/x"),
        ("GET", "/204"),
        ("HEAD", "/y"),
        ("GET", "/y"),
        ("GET", "/304"),
        ("HEAD", "/x"),
        ("HEAD", "/y"),
        ("GET", "/x"),
        ("GET", "/204"),
        ("GET", "/y"),
    ]
    try:
        for method, path in sequence:
            await conn.send(request_bytes(method, path))
            response = await conn.response(head=method == "HEAD")
            assert response.header("x-turnout-backend") == "legacy"
            if path == "/204":
                assert response.status == 204
                assert response.header("x-kind") == "no-content"
            elif path == "/304":
                assert response.status == 304
                assert response.header("etag") == '"v1"'
            else:
                assert response.status == 200, (method, path)
                assert response.header("x-path") == path
                assert response.header("content-length") == str(len(payload[path]))
                if method == "GET":
                    assert response.body == payload[path]
        # No stray body bytes after a HEAD/204/304: nothing else is waiting on the socket.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await conn.reader.read(1)
    finally:
        await conn.close()
    assert [(s.method, s.path_qs) for s in recorder.seen] == sequence
    assert pair.turnout.table.backends[0].pool.opened == 1  # one upstream connection, reused


# -- 5. x-turnout-backend, force header, flag at 100 % ---------------------------------------
async def test_backend_header_force_header_and_percent(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout)
    full = await start_pair(aiohttp_server, start_turnout, flags={"main": {"percent": 100}})
    async with aiohttp.ClientSession() as session:
        for url, headers, expected in (
            (pair.url, {}, "legacy"),
            (pair.url, {"x-turnout-backend": "new"}, "new"),
            (pair.url, {"x-turnout-backend": "legacy"}, "legacy"),
            (full.url, {}, "new"),
            (full.url, {"x-user-id": "someone"}, "new"),
            (full.url, {"x-turnout-backend": "legacy"}, "legacy"),
        ):
            async with session.get(f"{url}/who", headers=headers) as response:
                assert response.status == 200
                assert response.headers["x-turnout-backend"] == expected, (url, headers)
                assert (await response.json())["backend"] == expected


# -- 6. request and response bodies ------------------------------------------------------
async def test_post_with_content_length_arrives_intact(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout)
    body = os.urandom(300_000)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{pair.url}/upload", data=body) as response,
    ):
        assert response.status == 200
        answer = await response.json()
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    [seen] = pair.legacy.seen
    assert seen.header("content-length") == str(len(body))
    assert not seen.has("transfer-encoding")


async def test_chunked_post_arrives_intact(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout)
    parts = [os.urandom(size) for size in (1, 4096, 70_000, 13, 100_000)]

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{pair.url}/chunked", data=body()) as response,
    ):
        assert response.status == 200
        answer = await response.json()
    whole = b"".join(parts)
    assert answer["length"] == len(whole)
    assert answer["sha256"] == hashlib.sha256(whole).hexdigest()

    # The same by hand, with a chunk extension and a trailer.
    conn = await RawConnection.open(pair.port)
    try:
        await conn.send(
            b"POST /raw HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        raw = await conn.response()
    finally:
        await conn.close()
    assert raw.status == 200
    assert pair.legacy.seen[-1].body == b"hello world"


async def test_empty_post_keeps_content_length_zero(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout)
    conn = await RawConnection.open(pair.port)
    try:
        await conn.send(request_bytes("POST", "/empty", [("Content-Length", "0")]))
        response = await conn.response()
    finally:
        await conn.close()
    assert response.status == 200
    [seen] = pair.legacy.seen
    assert seen.values("content-length") == ["0"]


async def test_close_delimited_backend_response_is_relayed(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    body = os.urandom(100_000)

    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        writer.write(body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(old_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        turnout = await start_turnout(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}")
        conn = await RawConnection.open(turnout.proxy_port)
        try:
            await conn.send(request_bytes("GET", "/old"))
            response = await conn.response()
        finally:
            await conn.close()
    finally:
        server.close()
        await server.wait_closed()
    assert response.status == 200
    assert response.body == body


async def test_large_upload_is_streamed_not_buffered(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    total = 5 * MIB
    sent = 0
    sent_at_first_chunk: int | None = None
    first_chunk = asyncio.Event()
    digest = hashlib.sha256()

    async def handler(request: web.Request) -> web.Response:
        nonlocal sent_at_first_chunk
        received = 0
        backend_digest = hashlib.sha256()
        while chunk := await request.content.readany():
            if sent_at_first_chunk is None:
                sent_at_first_chunk = sent
                first_chunk.set()
            received += len(chunk)
            backend_digest.update(chunk)
        return web.json_response({"length": received, "sha256": backend_digest.hexdigest()})

    pair = await start_pair(aiohttp_server, start_turnout, legacy_app=app_with(handler))
    gate_timed_out = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, gate_timed_out
        while sent < total:
            if sent >= MIB and not first_chunk.is_set():
                # A buffering proxy would never let the backend see a byte before the
                # whole body arrived: stop feeding it and wait (bounded) for the backend.
                try:
                    await asyncio.wait_for(first_chunk.wait(), DEADLINE)
                except TimeoutError:
                    gate_timed_out = True
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            sent += len(chunk)
            yield chunk

    async with (
        asyncio.timeout(DEADLINE * 3),
        aiohttp.ClientSession() as session,
        session.post(f"{pair.url}/big", data=body()) as response,
    ):
        assert response.status == 200
        answer = await response.json()
    assert not gate_timed_out, "backend saw nothing while 1 MiB had been sent"
    assert sent_at_first_chunk is not None
    assert sent_at_first_chunk < 2 * MIB
    assert answer == {"length": total, "sha256": digest.hexdigest()}


async def test_large_download_is_streamed_not_buffered(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    total = 5 * MIB
    client_got_bytes = asyncio.Event()
    backend_finished = False
    backend_waited_in_vain = False
    digest = hashlib.sha256()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal backend_finished, backend_waited_in_vain
        response = web.StreamResponse()
        response.content_length = total
        await response.prepare(request)
        written = 0
        while written < total:
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            await response.write(chunk)
            written += len(chunk)
            if written == CHUNK:
                try:
                    await asyncio.wait_for(client_got_bytes.wait(), DEADLINE)
                except TimeoutError:
                    backend_waited_in_vain = True
        await response.write_eof()
        backend_finished = True
        return response

    pair = await start_pair(aiohttp_server, start_turnout, legacy_app=app_with(handler))
    client_digest = hashlib.sha256()
    received = 0
    finished_before_first_bytes = None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{pair.url}/big") as response,
    ):
        assert response.status == 200
        assert response.headers["content-length"] == str(total)
        async with asyncio.timeout(DEADLINE * 2):
            async for chunk in response.content.iter_any():
                if finished_before_first_bytes is None:
                    finished_before_first_bytes = backend_finished
                    client_got_bytes.set()
                received += len(chunk)
                client_digest.update(chunk)
    assert finished_before_first_bytes is False
    assert not backend_waited_in_vain, "client got nothing before the backend wrote everything"
    assert received == total
    assert client_digest.hexdigest() == digest.hexdigest()


# -- 7. body limit ---------------------------------------------------------------
async def test_body_over_limit_with_content_length_gets_413(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout, limits={"max_body_bytes": "1KiB"})
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(DEADLINE):
            async with session.post(f"{pair.url}/up", data=b"x" * 2048) as response:
                assert response.status == 413
                assert response.content_type == "application/json"
                error = (await response.json())["error"]
        assert error["code"] == "body_too_large"
        assert error["message"]
        # Right at the limit still works.
        async with session.post(f"{pair.url}/up", data=b"y" * 1024) as response:
            assert response.status == 200
    assert [s.path_qs for s in pair.legacy.seen] == ["/up"]
    assert pair.legacy.seen[0].body == b"y" * 1024


async def test_chunked_body_over_limit_gets_413_and_never_completes_upstream(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout, limits={"max_body_bytes": "1KiB"})
    conn = await RawConnection.open(pair.port)
    try:
        chunks = b"".join(b"200\r\n" + b"z" * 512 + b"\r\n" for _ in range(4))
        await conn.send(
            b"POST /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\n\r\n"
        )
        try:
            response = await conn.response()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            response = None  # a cut connection is acceptable; a hang is not
    finally:
        await conn.close()
    if response is not None:
        assert response.status == 413
        assert response.header("content-type") == "application/json"
        assert b'"body_too_large"' in response.body
    # The backend may have seen the head (the body streams), but never a complete body.
    assert not any(seen.body_complete for seen in pair.legacy.seen)
    # The proxy is fine afterwards.
    async with aiohttp.ClientSession() as session, session.get(f"{pair.url}/ok") as ok:
        assert ok.status == 200


# -- 8. backend down / silent ------------------------------------------------------------
async def test_down_backend_gives_json_502_quickly_and_is_counted(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    legacy = await aiohttp_server(recording_app("legacy"))
    dead = f"http://127.0.0.1:{unused_port()}"
    turnout = await start_turnout(str(legacy.make_url("")), dead, flags={"main": {"percent": 100}})
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{turnout.proxy_port}/x") as response,
    ):
        assert response.status == 502
        assert response.content_type == "application/json"
        body = await response.json()
        assert response.headers["x-turnout-backend"] == "new"
    assert time.monotonic() - started < 2.0
    assert set(body) == {"error"}
    assert body["error"]["code"] == "backend_unreachable"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    text = await scrape(turnout.admin_port)
    assert sample(text, "turnout_upstream_errors_total", backend="new", kind="connect_error") == 1.0
    assert sample(text, "turnout_requests_total", backend="new", code="502", method="GET") == 1.0


async def test_silent_backend_gives_json_504(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    legacy = await aiohttp_server(recording_app("legacy"))
    try:
        turnout = await start_turnout(
            str(legacy.make_url("")),
            f"http://127.0.0.1:{port}",
            flags={"main": {"percent": 100}},
            backends={
                "new": {
                    "url": f"http://127.0.0.1:{port}",
                    "timeouts": {"connect": "1s", "response": "0.5s"},
                }
            },
        )
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{turnout.proxy_port}/slow") as response,
        ):
            assert response.status == 504
            body = await response.json()
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 2.0
        assert body["error"]["code"] == "backend_timeout"
        assert held, "the silent backend never saw a connection"
        text = await scrape(turnout.admin_port)
        assert sample(text, "turnout_upstream_errors_total", backend="new", kind="timeout") == 1
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


# -- 9. client disconnect ---------------------------------------------------------
async def test_client_disconnect_cancels_the_upstream_request(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    outcome: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        started.set()
        try:
            await asyncio.wait_for(release.wait(), 10)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        except TimeoutError:
            outcome.append("timed out")
        return web.Response(text="late")

    pair = await start_pair(aiohttp_server, start_turnout, legacy_app=app_with(slow))
    conn = await RawConnection.open(pair.port)
    await conn.send(request_bytes("GET", "/slow"))
    await asyncio.wait_for(started.wait(), DEADLINE)
    await conn.close()
    try:
        # Well under the backend's 5 s response timeout, which would also close it.
        await wait_until(lambda: outcome == ["cancelled"], timeout=2.0)
    finally:
        release.set()
    # And the proxy still serves.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{pair.url}/again") as response,
    ):
        assert response.status == 200


# -- 10. metrics and admin -----------------------------------------------------------
async def test_request_metrics_and_admin_endpoints(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(aiohttp_server, start_turnout, flags={"main": {"percent": 25}})
    n = 7
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            headers = {"x-turnout-backend": "legacy"}
            async with session.get(f"{pair.url}/m", headers=headers) as response:
                assert response.status == 200
        text = await scrape(pair.turnout.admin_port)
        labels = {"route": "/**", "flag": "main", "backend": "legacy"}
        assert sample(text, "turnout_requests_total", **labels, method="GET", code="200") == n
        assert sample(text, "turnout_request_duration_seconds_count", **labels) == n
        assert sample(text, "turnout_request_duration_seconds_bucket", **labels, le="+Inf") == n
        assert sample(text, "turnout_flag_percent", flag="main") == 25.0

        for path in ("/healthz", "/readyz"):
            async with session.get(f"{pair.admin}{path}") as response:
                assert response.status == 200, path
        async with session.get(f"{pair.admin}/status") as response:
            assert response.status == 200
            status = await response.json()
        [flag] = status["flags"]
        assert flag["name"] == "main"
        assert flag["percent"] == 25.0
        assert flag["backends"]["legacy"]["requests"] == n
        assert flag["backends"]["new"]["requests"] == 0
        async with session.get(f"{pair.admin}/config") as response:
            assert response.status == 200
            config = await response.json()
        assert config["hash"] == pair.turnout.loaded.hash
        assert config["config"]["flags"]["main"]["percent"] == 25.0


async def test_unmatched_requests_go_to_legacy_and_are_labelled(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(
        aiohttp_server,
        start_turnout,
        flags={"main": {"percent": 100}},
        routes=[{"path": "/api/**", "flag": "main"}],
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{pair.url}/api/thing") as response:
            assert response.headers["x-turnout-backend"] == "new"
        for _ in range(3):
            async with session.get(f"{pair.url}/elsewhere") as response:
                assert response.status == 200
                assert response.headers["x-turnout-backend"] == "legacy"
    text = await scrape(pair.turnout.admin_port)
    assert (
        sample(text, "turnout_requests_total", route="unmatched", backend="legacy", code="200") == 3
    )
    assert sample(text, "turnout_requests_total", route="/api/**", flag="main", backend="new") == 1
    assert [s.path_qs for s in pair.legacy.seen] == ["/elsewhere"] * 3


# -- 11. anonymous clients -------------------------------------------------------------
async def test_anonymous_client_gets_a_sticky_cookie(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(
        aiohttp_server,
        start_turnout,
        sticky=[{"header": "x-user-id"}],
        flags={"main": {"percent": 50}},
    )
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(f"{pair.url}/anon") as response:
            assert response.status == 200
            first_side = response.headers["x-turnout-backend"]
            cookies = response.headers.getall("Set-Cookie")
        [cookie] = [c for c in cookies if c.startswith("turnout-id=")]
        key = cookie.split(";", 1)[0].split("=", 1)[1]
        assert key
        assert "Path=/" in cookie and "HttpOnly" in cookie
        for _ in range(20):
            async with session.get(
                f"{pair.url}/anon", headers={"Cookie": f"turnout-id={key}"}
            ) as response:
                assert response.headers["x-turnout-backend"] == first_side
                assert "turnout-id" not in " ".join(response.headers.getall("Set-Cookie", []))
        # A user id wins over the cookie and gets no cookie.
        async with session.get(f"{pair.url}/anon", headers={"x-user-id": "u1"}) as response:
            assert not response.headers.getall("Set-Cookie", [])


async def test_anonymous_cookie_can_be_turned_off(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    pair = await start_pair(
        aiohttp_server,
        start_turnout,
        sticky=[{"header": "x-user-id"}],
        sticky_cookie=False,
        flags={"main": {"percent": 50}},
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for _ in range(5):
            async with session.get(f"{pair.url}/anon") as response:
                assert response.status == 200
                assert response.headers["x-turnout-backend"] in ("legacy", "new")
                assert not response.headers.getall("Set-Cookie", [])
