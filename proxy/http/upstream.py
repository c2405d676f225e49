"""A lean pooled HTTP/1.1 client for talking to one backend.

aiohttp's ClientSession spends most of a proxy's CPU per request in its
request/response machinery (tracing hooks, cookie jar, redirects, retries,
StreamReader objects). A proxy needs none of that: it writes a request head it
already knows, parses the answer with llhttp (via httptools) and hands body
chunks straight to the client. One ``UpstreamConnection`` serves one request at
a time; idle connections wait in a LIFO pool per backend.

Nothing here retries: the caller decides (a replay must never duplicate a write).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools

from proxy.http.errors import UpstreamError, UpstreamReset, UpstreamTimeout
from proxy.http.flow import ChunkQueue, FlowControlledProtocol
from proxy.http.framing import ends_at_close

_READ_HIGH_WATER = 256 * 1024


class UpstreamConnection(FlowControlledProtocol):
    """One keep-alive connection to a backend, driven by httptools callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.reused = False  # handed out again by the pool (it may have gone stale meanwhile)
        self.body = ChunkQueue(
            # Bound methods: a cycle, but one per connection (long-lived), not per request.
            self._pause_reading, self._resume_reading, self._on_idle_timeout, _READ_HIGH_WATER
        )
        self._reset_exchange()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # After a 101 answer the connection becomes a byte tunnel (proxy.http.tunnel).
        self.upgraded = False
        self.tunnel_sink: Callable[[bytes], None] | None = None
        self.tunnel_backlog = bytearray()
        self.on_close: Callable[[], None] | None = None
        self.on_tunnel_eof: Callable[[], None] | None = None
        # Called when the response head arrives (a body still going up stops).
        self.on_answer: Callable[[], None] | None = None

    def _reset_exchange(self) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        self.head_request = False
        self.headers_done: asyncio.Future[None] | None = None
        self.body.reset()
        self._error: UpstreamError | None = None
        self._deadline = 0.0  # when the awaited response head is due; 0 = none awaited

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence the cast.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.headers_done is None:
            # Bytes while idle: the backend is confused or closing; never reuse.
            self.close()
            return
        if self.tunnel_sink is not None:
            self.tunnel_sink(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self.status != 101:
                self._fail(UpstreamReset("backend switched protocols unexpectedly"))
                return
            self.tunnel_backlog += data[int(upgrade.args[0]) :]
            self.upgraded = True
        except httptools.HttpParserError as exc:
            self._fail(UpstreamReset(f"invalid HTTP response from backend: {exc}"))

    def eof_received(self) -> bool | None:
        if self.on_tunnel_eof is not None:
            self.on_tunnel_eof()
            return True  # half-closed: keep writing what the client still sends
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done is not None and not self.complete and not self.upgraded:
            if self._ends_at_close():
                self.keep_alive = False
                self._finish_message()
            else:
                self._fail(UpstreamReset("backend closed the connection"))
        if self.on_close is not None:
            self.on_close()
        self._write_flow.fail(UpstreamReset("backend closed the connection"))

    # -- httptools callbacks ---------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim answer (103 Early Hints, a stray 100): wait for the real one.
            self.raw_headers = []
            return
        self.status = status
        self.keep_alive = bool(self._parser.should_keep_alive())
        self._deadline = 0.0
        self._write_flow.wake()  # a body writer waiting for room stops waiting
        if self.on_answer is not None:
            self.on_answer()
        if self.head_request:
            # llhttp does not know the request was HEAD and would wait for a body.
            self._parser = httptools.HttpResponseParser(self)
            self._finish_message()
        waiter = self.headers_done
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.keep_alive = False
            return
        self.body.feed(body)

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # end of an interim 1xx message
        self._finish_message()

    # -- used by the forwarding layer -------------------------------------
    def begin(self, head: bytes, *, head_request: bool) -> None:
        """Send a request head; the response timer starts with ``expect_response``."""
        self._reset_exchange()
        self.head_request = head_request
        self.headers_done = self._loop.create_future()
        assert self.transport is not None
        self.transport.write(head)

    def expect_response(self, response_timeout: float) -> None:
        """The request is all sent: the response head is due within ``response_timeout``.

        One lazily re-armed timer per connection rather than one per request; it is
        moved earlier when a deadline comes before the one it is armed for.
        """
        if self.headers_done is None or self.headers_done.done():
            return  # answered already (an early answer), or failed
        deadline = self._deadline = self._loop.time() + response_timeout
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_response_timeout)

    @property
    def answered(self) -> bool:
        """The final response head arrived (possibly before the request body was all sent)."""
        return self.status != 0

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self._stamp(UpstreamReset("backend closed the connection while sending the body"))
        self.transport.write(data)

    async def drain(self, idle_timeout: float) -> None:
        """Wait while the backend's socket buffer is full (request body backpressure).

        Returns early when the response head arrives (the backend answered without
        reading on); a backend that reads nothing for ``idle_timeout`` is a timeout.
        """
        try:
            await self._write_flow.wait(idle_timeout)
        except TimeoutError:
            if not self.answered:
                raise self._stamp(
                    UpstreamTimeout("backend stopped reading the request body")
                ) from None

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self._error is None

    def close(self, *, flush: bool = False) -> None:
        """Drop the connection; with ``flush`` the bytes already written go out first."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.closed:
            if flush:
                self.transport.close()
            else:
                self.transport.abort()
        self.closed = True

    # -- internals --------------------------------------------------------
    def _finish_message(self) -> None:
        self.complete = True
        self.body.finish()

    def _pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _stamp(self, error: UpstreamError) -> UpstreamError:
        """Note on the error what a caller needs to decide on a retry."""
        error.reused = self.reused
        error.response_started = self.answered
        return error

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = self._stamp(error)
        self._deadline = 0.0
        waiter = self.headers_done
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._error)
            waiter.exception()  # nobody may be waiting any more (client gone): don't log
        self.body.fail(self._error)
        self.close()

    def _ends_at_close(self) -> bool:
        """A response with neither Content-Length nor chunked framing ends at EOF."""
        if not self.headers_done or not self.headers_done.done() or self._error is not None:
            return False
        return ends_at_close(self.raw_headers)

    def _on_response_timeout(self) -> None:
        self._timer = None
        self._timer_at = 0.0
        deadline = self._deadline
        if deadline == 0.0 or self.closed:
            return
        if self._loop.time() < deadline:
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_response_timeout)
            return
        self._fail(UpstreamTimeout("backend did not answer in time"))

    def _on_idle_timeout(self, _: ChunkQueue) -> None:
        self._fail(UpstreamTimeout("backend stream went idle"))

    def error(self) -> UpstreamError | None:
        return self._error
