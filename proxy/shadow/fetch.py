"""Send a prepared request to a backend and read its whole answer, up to a cap.

The shadow's own small client on the proxy's pools: no fallback, no retry, no
health bookkeeping (a failing shadow must not eject a backend that serves real
traffic). The caller bounds the whole call with a timeout.
"""

from __future__ import annotations

from proxy.http.pool import BackendTarget
from proxy.http.upstream import UpstreamConnection


class AnswerTooLarge(Exception):
    """The answer's body is over the shadow's body cap."""


async def fetch(
    target: BackendTarget, head: bytes, body: bytes, method: str, max_body: int
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, raw headers, body) of the backend's answer to ``head`` + ``body``."""
    conn, _ = await target.pool.acquire(target.connect_timeout)
    try:
        conn.begin(head, head_request=method == "HEAD")
        if body:
            conn.write(body)
            await conn.drain(target.idle_timeout)
        conn.expect_response(target.response_timeout)
        waiter = conn.headers_done
        assert waiter is not None
        await waiter
        if conn.complete:  # the common case: the answer came whole with its head
            body = conn.body.take_all()
        else:
            body = await _read_body(conn, target.idle_timeout, max_body)
        if len(body) > max_body:
            raise AnswerTooLarge(f"answer larger than {max_body} bytes")
    except BaseException:
        conn.close()
        raise
    target.pool.release(conn)
    return conn.status, conn.raw_headers, body


async def _read_body(conn: UpstreamConnection, idle_timeout: float, max_body: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while data := await conn.body.read(idle_timeout):
        size += len(data)
        if size > max_body:
            raise AnswerTooLarge(f"answer larger than {max_body} bytes")
        chunks.append(data)
    return b"".join(chunks)
