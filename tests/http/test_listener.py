"""The proxy listener accepts a burst of connections in a few loop iterations, on
asyncio's loop and on uvloop's (whose libuv accepts one connection per iteration:
proxy/http/listener.py), and sheds load for a moment when it runs out of descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections.abc import Callable, Iterator

import pytest
import uvloop
from structlog.testing import capture_logs

from proxy.runtime.app import Turnout
from tests.conftest import make_config, wait_until

BURST = 200
UNREACHABLE = "http://127.0.0.1:9"  # never asked: these tests send no request

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(loop_name: str, scenario: Callable[[], object]) -> object:
    loop = LOOPS[loop_name]()
    try:
        return loop.run_until_complete(scenario())  # type: ignore[arg-type]
    finally:
        loop.close()


@contextlib.contextmanager
def connected(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` client connections; the kernel completes them into the accept queue
    while the loop is not running (blocking connects from inside one callback)."""
    clients: list[socket.socket] = []
    try:
        for _ in range(count):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield clients
    finally:
        for client in clients:
            client.close()


async def iterations_until(condition: Callable[[], bool], limit: int = 2000) -> int:
    """Loop iterations (one ``sleep(0)`` each) until ``condition`` holds."""
    for iteration in range(limit):
        if condition():
            return iteration
        await asyncio.sleep(0)
    raise AssertionError(f"not reached within {limit} loop iterations")


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_burst_of_connections_is_accepted_in_a_few_loop_iterations(loop_name: str) -> None:
    async def scenario() -> int:
        turnout = Turnout(
            make_config(UNREACHABLE, UNREACHABLE, limits={"listen_backlog": 2 * BURST})
        )
        await turnout.start()
        try:
            accepted = turnout.service._connections
            with connected(turnout.proxy_port, BURST):
                return await iterations_until(lambda: len(accepted) == BURST)
        finally:
            await turnout.stop()

    # One accept per iteration (uvloop's own server) needs BURST iterations; batches
    # of up to 256 need one, plus the few that set a connection up.
    assert run_on(loop_name, scenario) <= 20


def test_out_of_descriptors_pauses_accepting_then_resumes() -> None:
    async def scenario() -> None:
        turnout = Turnout(make_config(UNREACHABLE, UNREACHABLE))
        await turnout.start()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            with connected(turnout.proxy_port, 1):
                # The client's socket is open: the next descriptor is past the limit.
                client_fd = socket.socket()
                with capture_logs() as logs:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (client_fd.fileno(), hard))
                    client_fd.close()
                    await wait_until(lambda: any(e["event"] == "accept_failed" for e in logs))
                    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                assert not turnout.service._connections
                await wait_until(lambda: len(turnout.service._connections) == 1, timeout=5)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            await turnout.stop()

    run_on("asyncio", scenario)
