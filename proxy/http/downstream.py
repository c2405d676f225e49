"""The client-facing side of the proxy: one HTTP/1.1 connection, parsed with llhttp.

Why not aiohttp's web server here: per request it builds a BaseRequest, a
StreamResponse, a URL object and a task, and writes headers through a
general-purpose writer; measured on the 2-core machine, aiohttp's hello-world
server does ~14k req/s where this protocol does ~39k (bench/README.md). A
proxy needs none of that: it reads a head, hands the raw header lines on, and
writes back bytes it mostly already has. httptools (llhttp, the parser inside
aiohttp's C extension and Node) does the parsing through a stable callback API.

``ClientConnection`` parses requests (pipelined ones queue up), enforces the
head limits, feeds request bodies to the handler with backpressure, runs one
handler task at a time, and closes idle connections.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

from proxy.http.errors import Rejection
from proxy.http.flow import FlowControlledProtocol
from proxy.http.framing import accept_upgrade, check_transfer_encoding
from proxy.http.paths import UnsafePath, normalize_target
from proxy.http.request import EMPTY_BODY, ConnectionLimits, IncomingRequest
from proxy.http.wire import error_bytes

_MAX_QUEUED = 16
# Requests parsed ahead of the one being served. Reading pauses at _MAX_QUEUED,
# but one socket read can hold hundreds of tiny requests; past this many the
# queued ones are answered, then 429 and close (an object per request, not bytes).
MAX_PIPELINED = 64
# Bytes after an upgrade head, held while the backend negotiates.
_BACKLOG_HIGH_WATER = 256 * 1024
_MAX_HEADERS = 128
LINGER_SECONDS = 5.0


def _discard(_: bytes) -> None:
    pass


Handler = Callable[["IncomingRequest", "ClientConnection"], Awaitable[bool]]
"""Serves one request; returns False when the connection must close afterwards."""


class ClientConnection(FlowControlledProtocol):
    """One client connection: parse, queue, hand to the handler, keep alive or close."""

    def __init__(
        self,
        handler: Handler,
        limits: ConnectionLimits,
        registry: set[ClientConnection],
    ) -> None:
        super().__init__()
        self._handler = handler
        self._limits = limits
        self._registry = registry
        self._parser = httptools.HttpRequestParser(self)
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self._parsing: IncomingRequest | None = None
        self._queue: collections.deque[IncomingRequest | Rejection] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._busy = False
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._url = bytearray()
        self._reading_paused = False
        self.closed = False
        self.draining = False
        self.tunnel_sink: Callable[[bytes], None] | None = None
        self.on_tunnel_eof: Callable[[], None] | None = None
        self.tunnel_backlog = bytearray()
        self._tunnel_requested = False

    # -- asyncio.Protocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self._registry.add(self)
        self._idle_since = self._loop.time()
        self._idle_timer = self._loop.call_later(self._limits.idle_timeout, self._on_idle)

    def data_received(self, data: bytes) -> None:
        if self.tunnel_sink is not None:
            self.tunnel_sink(data)
            return
        while data:
            if self._parser is None:
                self._hold(data)
                return
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                data = self._after_upgrade(data[int(upgrade.args[0]) :])
                continue
            except httptools.HttpParserError as error:
                # An exception raised in a callback arrives wrapped, as the cause.
                cause = error.__cause__ or error.__context__
                if isinstance(cause, Rejection):
                    self._reject(cause.status, cause.code, str(cause))
                else:
                    self._reject(400, "bad_request", f"malformed request: {error}")
                return
            head = self._parsing
            if head is not None and not head.method:  # inline: every read passes here
                self._bound_head_line(head, len(data))
            return

    def _after_upgrade(self, rest: bytes) -> bytes:
        """llhttp stopped after a request asking for an upgrade. A WebSocket upgrade
        keeps the bytes after it for the tunnel; any other upgrade was refused (the
        request goes on as plain HTTP/1.1), so parsing resumes on a fresh parser.
        Returns the bytes still to parse."""
        if self._tunnel_requested:
            self._parser = None  # type: ignore[assignment]
            self._hold(rest)
            return b""
        self._parser = httptools.HttpRequestParser(self)
        return rest

    def _hold(self, data: bytes) -> None:
        """Bytes that arrive when no parser is left. After a WebSocket upgrade head they
        wait for the tunnel, reading paused above the high-water mark (``start_tunnel``
        resumes it); after a refused request they are dropped and reading pauses."""
        if not self._tunnel_requested:
            self.pause_reading()
            return
        self.tunnel_backlog += data
        if len(self.tunnel_backlog) >= _BACKLOG_HIGH_WATER:
            self.pause_reading()

    def _bound_head_line(self, head: IncomingRequest, size: int) -> None:
        """llhttp buffers a header line until it is whole: bound a line that never ends."""
        head.pending_bytes += size
        if head.pending_bytes > 2 * self._limits.max_head_bytes:
            self._reject(431, "header_too_large", "request header is too large")

    def eof_received(self) -> bool | None:
        if self.on_tunnel_eof is not None:
            self.on_tunnel_eof()
            return True  # half-closed: the backend may still answer through the tunnel
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._registry.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        gone = ConnectionResetError("client closed the connection")
        for item in (self._parsing, *self._queue):
            if isinstance(item, IncomingRequest):
                item.body.fail(gone)
        if self._task is not None:
            self._task.cancel()
        self._write_flow.fail(gone)

    # -- httptools callbacks ----------------------------------------------------
    def on_message_begin(self) -> None:
        if len(self._queue) >= MAX_PIPELINED:
            raise Rejection(429, "too_many_pipelined_requests", "too many pipelined requests")
        self._parsing = IncomingRequest()
        self._url.clear()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_line_bytes:
            raise Rejection(414, "uri_too_long", "request target is too long")
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        head = self._parsing
        assert head is not None
        head.raw_headers.append((name, value))
        if len(head.raw_headers) > _MAX_HEADERS:
            raise Rejection(431, "too_many_headers", "too many request headers")
        self._count_head(len(name) + len(value) + 4)
        lower = name.decode("latin-1").lower()
        if lower not in head.headers:
            head.headers[lower] = value.decode("latin-1")

    def _count_head(self, size: int) -> None:
        head = self._parsing
        assert head is not None
        head.head_bytes += size
        if head.head_bytes > self._limits.max_head_bytes:
            raise Rejection(431, "header_too_large", "request header is too large")

    def on_headers_complete(self) -> None:
        head = self._parsing
        assert head is not None
        parser = self._parser
        head.method = parser.get_method().decode("ascii")
        try:
            head.target = normalize_target(self._url.decode("latin-1"))
        except UnsafePath as unsafe:
            raise Rejection(400, "bad_request", str(unsafe)) from None
        head.version = version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise Rejection(400, "bad_request", f"HTTP/{version} is not HTTP/1.x")
        head.keep_alive = bool(parser.should_keep_alive()) and not self.draining
        headers = head.headers
        length = headers.get("content-length")
        head.content_length = int(length) if length is not None else None
        if "transfer-encoding" in headers:
            check_transfer_encoding(head.version, head.content_length, head.raw_headers)
            head.chunked = True
        head.expect_continue = headers.get("expect", "").lower() == "100-continue"
        if parser.should_upgrade():
            head.upgrade = self._tunnel_requested = accept_upgrade(
                head.method, head.has_body, head.raw_headers
            )
        if head.has_body:
            head.expect_body(self)
        self._enqueue(head)

    def on_body(self, body: bytes) -> None:
        head = self._parsing
        if head is not None and head.body is not EMPTY_BODY:
            head.body.feed(body)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.body.finish()
            self._parsing = None

    # -- used by the handler ----------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the client's socket buffer is full (response backpressure)."""
        if not self.closed:
            await self._write_flow.wait()

    def start_tunnel(self, sink: Callable[[bytes], None]) -> None:
        """Send the client's bytes to ``sink`` from now on, the held-back ones first.

        Reading resumes before the backlog is flushed: if the flush fills the
        backend's buffer, the tunnel's backpressure pauses reading again (asyncio
        delivers new bytes only on a later loop turn, after the backlog).
        """
        self.tunnel_sink = sink
        self.resume_reading()
        if self.tunnel_backlog:
            held = bytes(self.tunnel_backlog)
            self.tunnel_backlog.clear()
            sink(held)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Cut the connection (the client sees a truncated answer, never an appended one)."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close once buffered bytes are written."""
        if self.transport is not None and not self.closed:
            self.transport.close()

    @property
    def idle(self) -> bool:
        return not self._busy and not self._queue

    def _linger_close(self) -> None:
        """Close after an answer given before the request body was read (nginx's
        lingering close): half-close our side and read on, discarding, so that the
        client, still sending, gets the answer instead of a reset. Bounded by
        ``LINGER_SECONDS`` and by the client closing its side."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self.tunnel_sink = _discard  # every byte from now on is dropped
        self._reading_paused = False
        transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()  # sent once the answer is flushed
        self._loop.call_later(LINGER_SECONDS, transport.abort)

    # -- internals ----------------------------------------------------------------
    def _enqueue(self, item: IncomingRequest | Rejection) -> None:
        self._queue.append(item)
        self._busy = True
        if len(self._queue) >= _MAX_QUEUED:
            self.pause_reading()
        if self._task is None:
            self._task = self._loop.create_task(self._serve_queue())
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _serve_queue(self) -> None:
        """Serve queued requests in order, for the life of the connection (one task,
        not one per request); waits for the next head between requests."""
        while not self.closed:
            if not self._queue:
                self._busy = False
                self._idle_since = self._loop.time()
                self._wakeup = self._loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            item = self._queue.popleft()
            if len(self._queue) < _MAX_QUEUED // 2:
                self.resume_reading()
            if isinstance(item, Rejection):
                self.write(error_bytes(item.status, item.code, str(item), close=True))
                self.close()
                return
            keep_open = await self._handler(item, self)
            if not item.body.done:
                self._linger_close()  # answered before the body was read
                return
            if not keep_open or not item.keep_alive or self.draining:
                self.close()
                return

    def _reject(self, status: int, code: str, message: str) -> None:
        """Answer a request we cannot parse (after any in-flight answers), then close."""
        self._parser = None  # type: ignore[assignment]
        head = self._parsing
        if head is not None:
            head.body.fail(ConnectionAbortedError(message))
            self._parsing = None
            if self._queue and self._queue[-1] is head:
                self._queue.pop()  # not handed to the handler yet: it never will be
        self._enqueue(Rejection(status, code, message))
        self.pause_reading()  # nothing more is parsed from this connection

    def _on_idle(self) -> None:
        """Close a connection idle for ``idle_timeout``; a trickling head counts as idle.

        One timer per connection, re-armed when it fires, instead of re-arming on
        every request (timer heap work was ~9 % of the proxy's CPU).
        """
        timeout = self._limits.idle_timeout
        waited = self._loop.time() - self._idle_since
        if self._busy or waited < timeout:
            delay = timeout if self._busy else timeout - waited
            self._idle_timer = self._loop.call_later(delay, self._on_idle)
            return
        self._idle_timer = None
        if self.transport is not None:
            self.transport.close()
