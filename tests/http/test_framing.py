"""Request framing a proxy must not guess at (RFC 9112 §6): a Transfer-Encoding other
than exactly ``chunked``, or one an HTTP/1.0 client sends, is a 400 and a closed
connection, and the backend never sees the request (SPEC §5, the smuggling cases)."""

from __future__ import annotations

import pytest
from pytest_aiohttp.plugin import AiohttpServer

from tests.conftest import StartTurnout
from tests.http.test_raw_socket import assert_still_serving, error_code, start
from tests.support.backends import RawConnection

BAD_CODINGS = [
    b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Transfer-Encoding: identity\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked, chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked;q=1\r\n",
    b"Transfer-Encoding: \r\n",
    b"Transfer-Encoding: ,chunked\r\n",
]


@pytest.mark.parametrize("coding", BAD_CODINGS, ids=lambda c: c.decode().strip())
async def test_transfer_encoding_other_than_chunked_is_400_and_close(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, coding: bytes
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"POST /te HTTP/1.1\r\nHost: test\r\n" + coding + b"\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        response = await conn.response()
        assert response.status == 400
        assert error_code(response) == "bad_request"
        assert await conn.closed_by_peer()
    finally:
        await conn.close()
    assert recorder.seen == []
    await assert_still_serving(turnout, recorder)


async def test_transfer_encoding_from_an_http10_client_is_rejected(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"POST /old HTTP/1.0\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        response = await conn.response()
        assert response.status == 400
        assert await conn.closed_by_peer()
    finally:
        await conn.close()
    assert recorder.seen == []
    await assert_still_serving(turnout, recorder)


async def test_plain_chunked_request_still_goes_through(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"POST /ok HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: Chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n0\r\n\r\n"
        )
        response = await conn.response()
    finally:
        await conn.close()
    assert response.status == 200
    assert [(s.path_qs, s.body) for s in recorder.seen] == [("/ok", b"hello")]


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX\r\n0\r\n\r\n"],
    ids=["size-not-hex", "space-after-size", "data-longer-than-size"],
)
async def test_a_body_found_malformed_before_the_request_is_served_never_reaches_a_backend(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, body: bytes
) -> None:
    """Head and bad chunk arrive in one read: the request is still queued when the
    parser fails, so it is dropped and the 400 answers for it."""
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(
            b"POST /bad-chunk HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        )
        response = await conn.response()
        assert response.status == 400
        assert error_code(response) == "bad_request"
        assert await conn.closed_by_peer()
    finally:
        await conn.close()
    assert recorder.seen == []
    await assert_still_serving(turnout, recorder)


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0"])
async def test_a_request_line_with_another_http_version_is_refused(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, version: bytes
) -> None:
    turnout, recorder = await start(aiohttp_server, start_turnout)
    conn = await RawConnection.open(turnout.proxy_port)
    try:
        await conn.send(b"GET /v " + version + b"\r\nHost: test\r\n\r\n")
        response = await conn.response()
        assert response.status == 400
        assert await conn.closed_by_peer()
    finally:
        await conn.close()
    assert recorder.seen == []
