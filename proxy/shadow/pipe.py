"""Shadow GETs without a task each: pipelined on a few keep-alive connections.

A mirrored request used to cost a task, a coroutine chain, a future and a
socket write of its own: more CPU than the proxied request it copies. Here the
shadow GETs queued during one turn of the event loop go to the other backend
in a single write on one connection, pipelined (RFC 9112 §9.3.2: a client may
send several idempotent requests without waiting), and each answer is handed
to its ``ShadowCall`` from the parser's callbacks, in order, as it completes.

Only GET is pipelined (llhttp cannot tell a HEAD's answer has no body, and
writes must never be pipelined); other methods take the shadow's one-request
client (``proxy.shadow.fetch``). Bounded: at most ``MAX_PIPES`` connections per
backend, ``MAX_BATCH`` requests per write and ``MAX_DEPTH`` awaited per
connection; a busy connection holds a slot of the backend's
``max_connections`` like any other, and a shadow that finds none free is
dropped, never queued behind real traffic. A backend that announces
``Connection: close`` never reads what was pipelined behind that answer
(RFC 9112 §9.6), so those requests go out again on another connection: they
were not answered, not failed. A connection that breaks, or that does not
complete its next answer within the backend's response timeout (from the send,
then from the previous answer), fails every request it still owes an answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import httptools

from proxy.http.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
    UpstreamTimeout,
)
from proxy.http.framing import ends_at_close
from proxy.http.pool import BackendTarget

MAX_PIPES = 8
MAX_BATCH = 32
MAX_DEPTH = 64


class ShadowCall:
    """One request for the other backend and what to do with its answer (subclassed
    by the shadow service: ``answer`` and ``fail`` are called once, one of them)."""

    __slots__ = ("head", "max_body")

    def __init__(self, head: bytes, max_body: int) -> None:
        self.head = head
        self.max_body = max_body

    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | None) -> None:
        """The backend's answer; ``body`` is ``None`` when it was over ``max_body``."""
        raise NotImplementedError

    def fail(self, error: Exception) -> None:
        """No answer came (``error`` says why)."""
        raise NotImplementedError


class ShadowPipe(asyncio.Protocol):
    """One connection carrying pipelined shadow GETs; answers arrive in order."""

    def __init__(self, sender: ShadowSender) -> None:
        self._sender = sender
        self._loop = sender.loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[ShadowCall] = deque()
        self._unsent: list[bytes] = []
        self.closing = False  # the backend said close, or the connection broke
        self.idle_since = 0.0
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0

    # -- sending ---------------------------------------------------------------
    def send(self, calls: list[ShadowCall]) -> None:
        if not self.pending:
            self._push_deadline(self._sender.target.response_timeout)
        self.pending.extend(calls)
        data = b"".join([call.head for call in calls])
        if self.transport is None:
            self._unsent.append(data)  # still connecting
        else:
            self.transport.write(data)

    # -- asyncio.Protocol --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if self.closing:  # gave up (timed out, or stopped) while connecting
            transport.close()
            return
        self.transport.write(b"".join(self._unsent))
        self._unsent.clear()

    def data_received(self, data: bytes) -> None:
        if not self.pending:
            self._break(UpstreamReset("backend sent bytes nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._break(UpstreamReset(f"invalid HTTP response from backend: {error}"))
        except _Unasked:
            self._break(UpstreamReset("backend sent an answer nobody asked for"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._status and self.pending and ends_at_close(self._headers):
            self._answer(keep_alive=False)  # an answer that the connection's end frames
        self._break(UpstreamReset("backend closed the connection"))

    def connect_failed(self, error: UpstreamError) -> None:
        self._break(error)

    # -- httptools callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        if not self.pending:
            raise _Unasked
        self._headers = []
        self._body = []
        self._size = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status if status >= 200 else 0  # an interim 1xx: not the answer

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self.pending[0].max_body:
            self._body.append(body)
        else:
            self._body.clear()

    def on_message_complete(self) -> None:
        if self._status == 0:
            return  # the end of an interim 1xx
        self._answer(keep_alive=bool(self._parser.should_keep_alive()))

    def _answer(self, *, keep_alive: bool) -> None:
        call, status = self.pending.popleft(), self._status
        self._status = 0
        if not keep_alive:
            self._stop_reading()
        body = b"".join(self._body) if self._size <= call.max_body else None
        call.answer(status, self._headers, body)
        if self.closing:
            return
        if not self.pending:
            self._cancel_timer()
            self._sender.idle(self)
        else:
            self._push_deadline(self._sender.target.response_timeout)

    # -- ending ------------------------------------------------------------------
    def _stop_reading(self) -> None:
        """The backend closes after this answer: what was pipelined behind it was never
        read, so it goes out again on another connection."""
        self._sender.resend(self._shut())

    def _break(self, error: UpstreamError) -> None:
        owed = self._shut()
        self._sender.gone(self)
        for call in owed:
            call.fail(error)

    def close(self) -> None:
        """Shut down (the proxy is stopping): what is owed is abandoned, not failed."""
        self._shut()

    def _shut(self) -> list[ShadowCall]:
        """Close the connection (no more sends); returns the calls it still owed."""
        self.closing = True
        owed, self.pending = list(self.pending), deque()
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        return owed

    # -- the one timer -------------------------------------------------------------
    def _push_deadline(self, seconds: float) -> None:
        """Something is due within ``seconds``; one lazily re-armed timer per connection."""
        self._deadline = self._loop.time() + seconds
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self.pending:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        self._break(UpstreamTimeout("backend did not answer the shadow copy in time"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ShadowSender:
    """The pipelined shadow connections to one backend, and the calls queued for them.

    ``submit`` queues a call; once per loop turn the queue goes out, in batches,
    on idle connections first, then new ones (up to ``MAX_PIPES``), then behind
    the least busy one.
    """

    def __init__(self, target: BackendTarget) -> None:
        self.target = target
        self.loop = asyncio.get_running_loop()
        self._queue: list[ShadowCall] = []
        self._scheduled = False
        self._idle: list[ShadowPipe] = []
        self._busy: set[ShadowPipe] = set()  # owing answers (or connecting), each holding a slot
        self._connecting: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(self, call: ShadowCall) -> None:
        self._queue.append(call)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush)

    def resend(self, calls: list[ShadowCall]) -> None:
        for call in calls:
            self.submit(call)

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), MAX_BATCH):
            self._send(queue[start : start + MAX_BATCH])

    def _send(self, batch: list[ShadowCall]) -> None:
        pool = self.target.pool
        pipe = self._take_idle()
        if pipe is not None:
            if pool.take_slot():
                self._busy.add(pipe)
                pipe.send(batch)
                return
            self._idle.append(pipe)
        elif len(self._busy) < MAX_PIPES and pool.take_slot():
            self._open(batch)
            return
        fewest = min(self._busy, key=_depth, default=None)
        if fewest is None:  # the pool's cap is taken by real traffic: never wait behind it
            self._refuse(batch, "max_connections", "no connection to the backend is free")
        elif len(fewest.pending) + len(batch) > MAX_DEPTH:
            self._refuse(batch, "in_flight", "every shadow connection is queued full")
        else:
            fewest.send(batch)

    def _refuse(self, batch: list[ShadowCall], reason: str, why: str) -> None:
        for call in batch:
            call.fail(NoConnection(reason, f"{why} ({self.target.name})"))

    def _take_idle(self) -> ShadowPipe | None:
        idle = self._idle
        horizon = self.loop.time() - self.target.pool.idle_seconds
        while idle:
            pipe = idle.pop()
            if not pipe.closing and pipe.idle_since > horizon:
                return pipe
            pipe.close()
        return None

    def _open(self, batch: list[ShadowCall]) -> None:
        pipe = ShadowPipe(self)
        self._busy.add(pipe)
        pipe.send(batch)  # written once connected
        task = self.loop.create_task(self._connect(pipe))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, pipe: ShadowPipe) -> None:
        try:
            await self.target.pool.open_protocol(lambda: pipe, self.target.connect_timeout)
        except UpstreamError as error:
            pipe.connect_failed(error)
        except Exception as error:  # not a backend's fault, but the calls must still end
            pipe.connect_failed(UpstreamConnectError(f"connect failed: {error!r}"))

    def idle(self, pipe: ShadowPipe) -> None:
        """``pipe`` has every answer it owed: free its slot, keep it for the next batch."""
        self._busy.discard(pipe)
        self.target.pool.give_slot()
        if pipe.closing or self._closed:
            pipe.close()
            return
        pipe.idle_since = self.loop.time()
        self._idle.append(pipe)

    def gone(self, pipe: ShadowPipe) -> None:
        """``pipe`` broke or was closed by the backend."""
        if pipe in self._busy:
            self._busy.discard(pipe)
            self.target.pool.give_slot()
        elif pipe in self._idle:
            self._idle.remove(pipe)

    def retire(self) -> None:
        """The backend left the config: close the idle connections now, the busy ones
        once they have their answers."""
        self._closed = True
        for pipe in self._idle:
            pipe.close()
        self._idle.clear()

    def close(self) -> None:
        """Stop: close every connection; what is still owed is abandoned."""
        self.retire()
        self._queue.clear()
        for pipe in list(self._busy):
            pipe.close()


def _depth(pipe: ShadowPipe) -> int:
    return len(pipe.pending)


class NoConnection(Exception):
    """No connection could take the copy, which is dropped for ``reason``:
    ``max_connections`` (the backend's cap is taken by real traffic) or ``in_flight``
    (every shadow connection already awaits ``MAX_DEPTH`` answers: a slow backend)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Unasked(Exception):
    """An answer arrived with no request waiting for it."""
