"""A corpus of malformed and hostile requests (tests/http/hostile_corpus.py) and a
fuzzer, against one Turnout for the whole module (SPEC §5: a clear 4xx or a close,
never a crash or a hang).

For every case: the proxy answers 4xx or closes within a deadline (never a 2xx,
never a 5xx, never silence), the backends record nothing, and a normal GET on a
fresh connection still gets 200. Turnout and its two recording backends run on
their own event loop in a thread, so the module shares them and the hypothesis
fuzzer can drive plain blocking sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.runtime.app import Turnout
from tests.conftest import make_config
from tests.http.hostile_corpus import CORPUS, CUT, Case
from tests.support.backends import Recorder, recording_app

DEADLINE = 5.0
IDLE_TIMEOUT = 1.0  # the client idle timeout: a head that never ends is cut after it


@dataclass
class LiveProxy:
    port: int
    recorder: Recorder


class _ProxyThread(threading.Thread):
    """Two recording backends and a Turnout on an event loop of their own."""

    def __init__(self) -> None:
        super().__init__(name="hostile-proxy", daemon=True)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.recorder = Recorder()
        self.port = 0
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        runners = [web.AppRunner(recording_app(name, self.recorder)) for name in ("l", "n")]
        urls = []
        for runner in runners:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
        turnout = Turnout(
            make_config(
                *urls,
                limits={"client_idle_timeout": f"{int(IDLE_TIMEOUT * 1000)}ms"},
                access_log=False,
            )
        )
        await turnout.start(admin=False)
        self.port = turnout.proxy_port
        self.ready.set()
        await self._stopping.wait()
        await turnout.stop()
        for runner in runners:
            await runner.cleanup()

    def stop(self) -> None:
        stop = self._stopping
        if stop is not None:
            self.loop.call_soon_threadsafe(stop.set)
        self.join(DEADLINE)


@pytest.fixture(scope="module")
def live_proxy() -> Iterator[LiveProxy]:
    thread = _ProxyThread()
    thread.start()
    assert thread.ready.wait(DEADLINE), "Turnout did not start"
    try:
        yield LiveProxy(thread.port, thread.recorder)
    finally:
        thread.stop()


# -- a blocking raw client -------------------------------------------------------
def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.settimeout(DEADLINE)
    return sock


def _send(sock: socket.socket, data: bytes) -> None:
    """Send what the proxy will take; it may answer and close before reading it all."""
    with contextlib.suppress(ConnectionError):
        sock.sendall(data)


def _read_to_close(sock: socket.socket, deadline: float = DEADLINE) -> bytes:
    """Everything until the proxy closes; fails the test if it stays open past ``deadline``."""
    received = bytearray()
    end = time.monotonic() + deadline
    while True:
        sock.settimeout(max(end - time.monotonic(), 0.001))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return bytes(received)
        except TimeoutError:
            message = f"no close within {deadline}s; got {bytes(received)[:80]!r}"
            raise AssertionError(message) from None
        if not data:
            return bytes(received)
        received += data


def _status(reply: bytes) -> int | None:
    if not reply.startswith(b"HTTP/1.1 "):
        return None
    return int(reply[9:12])


def assert_still_serving(proxy: LiveProxy, *, only: bool = True) -> None:
    """A normal GET gets 200; with ``only``, it is all the backends saw meanwhile."""
    before = len(proxy.recorder.seen)
    with _connect(proxy.port) as sock:
        _send(sock, b"GET /after HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        reply = _read_to_close(sock)
    assert _status(reply) == 200, reply[:200]
    paths = [s.path_qs for s in proxy.recorder.seen[before:]]
    assert (paths == ["/after"]) if only else ("/after" in paths)


# -- the corpus --------------------------------------------------------------------
def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 100


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_hostile_request_is_refused_and_reaches_no_backend(
    live_proxy: LiveProxy, case: Case
) -> None:
    before = len(live_proxy.recorder.seen)
    with _connect(live_proxy.port) as sock:
        _send(sock, case.data)
        reply = _read_to_close(sock)
    status = _status(reply)
    if case.outcome == CUT:
        assert status is None or 400 <= status < 500, reply[:200]
    else:
        assert status is not None and 400 <= status < 500, reply[:200]
        assert b"connection: close" in reply.lower()
        assert reply.count(b"HTTP/1.1 ") == 1, "anything after the refusal was served"
    assert live_proxy.recorder.seen[before:] == []
    assert_still_serving(live_proxy)


def test_a_head_trickled_byte_by_byte_is_cut_at_the_idle_timeout(
    live_proxy: LiveProxy,
) -> None:
    """Slow headers (slowloris): bytes keep coming but the head never completes; the
    client idle timeout still closes the connection."""
    before = len(live_proxy.recorder.seen)
    started = time.monotonic()
    with _connect(live_proxy.port) as sock:
        sock.setblocking(False)
        head = iter(b"GET /slow HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"s" * 10_000)
        closed = False
        while not closed and time.monotonic() - started < DEADLINE:
            try:
                sock.send(bytes([next(head)]))
                closed = sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionError:
                closed = True
            time.sleep(0.01)  # the trickle's pace, not a synchronisation
    assert closed, "a trickling head kept the connection open"
    assert time.monotonic() - started < IDLE_TIMEOUT + 3.0
    assert live_proxy.recorder.seen[before:] == []
    assert_still_serving(live_proxy)


# -- the fuzzer ----------------------------------------------------------------------
VALID = (
    b"POST /fuzz?q=1 HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
    b"Transfer-Encoding: chunked\r\nX-User-Id: 7\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
)


@st.composite
def mutated_request(draw: st.DrawFn) -> bytes:
    """The valid request with a few bytes flipped, inserted or deleted."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 44, 58, 59, 127, 255, 0x41]))
        if action == "flip":
            data[at] = byte
        elif action == "insert":
            data.insert(at, byte)
        elif len(data) > 1:
            del data[at]
    return bytes(data)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.one_of(st.binary(max_size=512), mutated_request()))
def test_random_bytes_never_take_the_proxy_down(live_proxy: LiveProxy, data: bytes) -> None:
    """Whatever arrives, the proxy answers or closes once the client stops sending
    (a half-close), and then serves a normal request."""
    with _connect(live_proxy.port) as sock:
        _send(sock, data)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        reply = _read_to_close(sock)
    status = _status(reply)
    assert status is None or status < 500, reply[:200]
    # A fuzzed request can be valid; one cut short by the half-close may still be
    # arriving at a backend, so only the GET's own answer is checked.
    assert_still_serving(live_proxy, only=False)
