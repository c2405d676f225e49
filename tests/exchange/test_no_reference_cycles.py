"""A request through the proxy leaves no reference cycle behind.

A cycle per request (an object holding a bound method of itself, say) is freed
only by the cyclic garbage collector: more CPU, and collector pauses that show
as a latency tail (p99 went from ~7 ms to ~30 ms under wrk when one crept in).
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from tests.conftest import StartTurnout, wait_until
from tests.support.backends import RawConnection, request_bytes
from tests.support.raw_backend import RawBackend

REQUESTS = 300


@pytest.mark.parametrize(
    "flag",
    [{"percent": 0}, {"percent": 0, "shadow": {"percent": 100}}],
    ids=["plain", "shadowed"],
)
async def test_requests_leave_no_cycles_for_the_garbage_collector(
    start_turnout: StartTurnout, flag: dict[str, object]
) -> None:
    async def keep_alive(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int
    ) -> None:
        while True:
            await backend.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    async with RawBackend(keep_alive) as backend:
        turnout = await start_turnout(backend.url, backend.url, flags={"main": flag})
        conn = await RawConnection.open(turnout.proxy_port)
        for _ in range(20):  # warm up: pools, caches, first-use allocations
            await conn.send(request_bytes("GET", "/warm"))
            assert (await conn.response()).status == 200
        gc.collect()
        gc.disable()
        try:
            for _ in range(REQUESTS):
                await conn.send(request_bytes("GET", "/x", [("x-user-id", "u1")]))
                assert (await conn.response()).status == 200
            await wait_until(lambda: not turnout.shadow._tasks)  # shadows done too
            unreachable = gc.collect()
        finally:
            gc.enable()
        await conn.close()
    # A cycle per request would leave at least one object per request (one crept in
    # once: about 9 per request); a few come from the test's own client and backend.
    assert unreachable < REQUESTS // 10, f"{unreachable} in cycles after {REQUESTS} requests"
