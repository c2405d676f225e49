"""Malformed and hostile requests, written by hand on a socket (SPEC §5: limits give a
clear 4xx, never a crash). Every read has a deadline; after each abuse a normal
request on a fresh connection must still work, and the backend must have seen
nothing it should not have."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from pytest_aiohttp.plugin import AiohttpServer

from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout
from tests.support.backends import (
    RawConnection,
    RawResponse,
    Recorder,
    recording_app,
    request_bytes,
)

KIB = 1024


async def start(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, **overrides: object
) -> tuple[Turnout, Recorder]:
    recorder = Recorder()
    legacy = await aiohttp_server(recording_app("legacy", recorder))
    new = await aiohttp_server(recording_app("new", recorder))
    turnout = await start_turnout(str(legacy.make_url("")), str(new.make_url("")), **overrides)
    return turnout, recorder


async def exchange(port: int, data: bytes) -> RawResponse:
    """Send ``data`` on a fresh connection and read one response (deadline-bounded)."""
    conn = await RawConnection.open(port)
    try:
        await conn.send(data)
        return await conn.response()
    finally:
        await conn.close()


async def assert_still_serving(turnout: Turnout, recorder: Recorder) -> None:
    before = len(recorder.seen)
    response = await exchange(turnout.proxy_port, request_bytes("GET", "/after"))
    assert response.status == 200
    assert response.header("x-turnout-backend") == "legacy"
    assert [s.path_qs for s in recorder.seen[before:]] == ["/after"]


def error_code(response: RawResponse) -> str:
    assert "application/json" in (response.header("content-type") or "")
    code = orjson.loads(response.body)["error"]["code"]
    assert isinstance(code, str)
    return code


async def test_content_length_with_transfer_encoding_is_rejected(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    smuggle = (
        b"POST /smuggle HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: test\r\n\r\n"
    )
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(smuggle)
        response = await conn.response()
        assert 400 <= response.status < 500
        assert error_code(response) == "bad_request"
        # The connection is closed after a framing error: nothing more is parsed from it.
        assert await conn.closed_by_peer()
    finally:
        await conn.close()
    assert recorder.seen == []
    await assert_still_serving(turnout, recorder)


async def test_oversized_header_gets_431(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(
        aiohttp_server, start_turnout, limits={"max_header_bytes": "4KiB"}
    )
    response = await exchange(
        turnout.proxy_port, request_bytes("GET", "/big-header", [("X-Big", "a" * 8 * KIB)])
    )
    assert response.status == 431
    assert error_code(response) == "header_too_large"
    # Just under the limit is fine.
    ok = await exchange(
        turnout.proxy_port, request_bytes("GET", "/fits", [("X-Big", "b" * 3 * KIB)])
    )
    assert ok.status == 200
    assert [s.path_qs for s in recorder.seen] == ["/fits"]
    await assert_still_serving(turnout, recorder)


async def test_many_headers_over_the_total_head_limit_get_431(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(
        aiohttp_server, start_turnout, limits={"max_header_bytes": "4KiB"}
    )
    headers = [(f"X-Part-{i}", "c" * KIB) for i in range(8)]  # 8 KiB in all, one write
    response = await exchange(turnout.proxy_port, request_bytes("GET", "/many", headers))
    assert response.status == 431
    assert recorder.seen == []


async def test_too_many_headers_get_431(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    headers = [(f"X-H-{i}", "v") for i in range(200)]
    response = await exchange(turnout.proxy_port, request_bytes("GET", "/many", headers))
    assert response.status == 431
    assert error_code(response) == "too_many_headers"
    assert recorder.seen == []
    await assert_still_serving(turnout, recorder)


async def test_overlong_request_line_gets_a_4xx(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(
        aiohttp_server, start_turnout, limits={"max_line_bytes": "1KiB"}
    )
    response = await exchange(turnout.proxy_port, request_bytes("GET", "/" + "p" * 4 * KIB))
    assert response.status in (414, 431)
    assert recorder.seen == []
    await assert_still_serving(turnout, recorder)


@pytest.mark.parametrize(
    "garbage",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: test\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: test\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["request-line", "nul-in-target", "version", "header-name", "negative-length", "chunk"],
)
async def test_garbage_gets_400_and_never_reaches_the_backend(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, garbage: bytes
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(garbage)
        try:
            response: RawResponse | None = await conn.response()
        except (ConnectionResetError, EOFError):
            response = None
    finally:
        await conn.close()
    if garbage.endswith(b"zz\r\n"):
        # A bad chunk is only seen once the request is under way upstream: a cut
        # connection or an error answer are both acceptable, a hang or a 2xx are not.
        assert response is None or response.status >= 400
        assert not any(seen.body_complete for seen in recorder.seen)
    else:
        assert response is not None
        assert response.status == 400
        assert error_code(response) == "bad_request"
        assert recorder.seen == []
    await assert_still_serving(turnout, recorder)


async def test_expect_100_continue_is_answered(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"POST /expect HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = await conn.response(timeout=0.5)
        assert interim.status == 100
        await conn.send(b"hello")
        final = await conn.response()
        assert final.status == 200
    finally:
        await conn.close()
    assert recorder.seen[-1].body == b"hello"


async def test_pipelined_requests_are_answered_in_order(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            request_bytes("GET", "/one")
            + request_bytes("POST", "/two", body=b"second body")
            + request_bytes("HEAD", "/three")
            + request_bytes("GET", "/four")
        )
        answers = [
            await conn.response(),
            await conn.response(),
            await conn.response(head=True),
            await conn.response(),
        ]
    finally:
        await conn.close()
    assert [a.status for a in answers] == [200, 200, 200, 200]
    paths = [orjson.loads(a.body)["path"] for a in answers if a.body]
    assert paths == ["/one", "/two", "/four"]
    assert [(s.method, s.path_qs) for s in recorder.seen] == [
        ("GET", "/one"),
        ("POST", "/two"),
        ("HEAD", "/three"),
        ("GET", "/four"),
    ]
    assert recorder.seen[1].body == b"second body"


async def test_the_listen_backlog_is_the_configured_one(start_turnout: StartTurnout) -> None:
    """`ss` shows a listening socket's backlog in its Send-Q column."""
    turnout = await start_turnout(
        "http://127.0.0.1:9", "http://127.0.0.1:9", limits={"listen_backlog": 77}
    )
    ss = await asyncio.create_subprocess_exec(
        "ss", "-Hltn", f"sport = :{turnout.proxy_port}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(ss.communicate(), 10)
    assert ss.returncode == 0
    (line,) = out.decode().splitlines()
    assert line.split()[2] == "77"
