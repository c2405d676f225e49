"""Flow control shared by both sides' protocols, for writing and for reading.

Writing: asyncio calls a protocol's ``pause_writing``/``resume_writing`` when
its transport's buffer crosses the high/low water marks; the coroutine writing
a body awaits ``wait()`` after each chunk, so a slow reader slows the writer
instead of growing the buffer. Reading: a ``ChunkQueue`` pauses the socket it
is fed from while too many bytes wait for the relaying coroutine.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable


class WriteFlow:
    __slots__ = ("_paused", "_waiter", "on_pause", "on_resume")

    def __init__(self) -> None:
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        # Set by a byte tunnel: stop and restart reading the other socket.
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None

    def pause(self) -> None:
        self._paused = True
        if self.on_pause is not None:
            self.on_pause()

    def resume(self) -> None:
        self._paused = False
        if self.on_resume is not None:
            self.on_resume()
        self.wake()

    def fail(self, error: BaseException) -> None:
        """The connection is gone: a writer waiting for room gets ``error``."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
            waiter.exception()  # the writer may be gone too: never log it as unretrieved

    def wake(self) -> None:
        """Let a waiting writer go on although the buffer is still full (it has
        something else to look at: e.g. the backend answered)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, idle_timeout: float | None = None) -> None:
        """Return at once unless the buffer is full; then wait until it drained
        (``TimeoutError`` after ``idle_timeout`` seconds without room)."""
        if not self._paused:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if idle_timeout is None else loop.call_later(idle_timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class FlowControlledProtocol(asyncio.Protocol):
    """A protocol whose writers await ``drain()`` while asyncio reports a full buffer."""

    def __init__(self) -> None:
        self._write_flow = WriteFlow()

    @property
    def write_flow(self) -> WriteFlow:
        return self._write_flow

    def pause_writing(self) -> None:
        self._write_flow.pause()

    def resume_writing(self) -> None:
        self._write_flow.resume()


class ChunkQueue:
    """Body chunks on their way from a socket to the one coroutine that relays them.

    Both sides use it: a request body from the client, a response body from a
    backend. Reading the socket pauses while more than ``high_water`` bytes wait
    (read backpressure) and resumes below a quarter of it. ``read`` waits at most
    ``idle_timeout`` for the next chunk, then calls ``on_idle(queue)``, which is
    expected to ``fail`` the queue with the error the reader should see. (A
    function of the queue, not a bound method of its owner: a request that held
    its own queue holding its own method would be a reference cycle, freed only
    by the garbage collector — one per request, and GC pauses in the tail.)
    """

    __slots__ = (
        "_chunks",
        "_error",
        "_high_water",
        "_interrupted",
        "_on_idle",
        "_pause",
        "_paused",
        "_resume",
        "_size",
        "_waiter",
        "done",
        "received",
    )

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        on_idle: Callable[[ChunkQueue], None],
        high_water: int,
    ) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._pause = pause
        self._resume = resume
        self._on_idle = on_idle
        self._high_water = high_water
        self._paused = False
        self._interrupted = False
        self._size = 0
        self.done = False
        self.received = 0

    def reset(self) -> None:
        """Empty, for the next message on the same connection."""
        self._chunks.clear()
        self._error = None
        self._size = 0
        self.done = False
        self.received = 0
        self._resume_if_paused()

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        self.received += len(chunk)
        if self._size > self._high_water and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The reader gets ``error`` once the chunks before it are read (a finished
        body cannot fail any more)."""
        if self._error is None and not self.done:
            self._error = error
        self._wake()

    @property
    def failed(self) -> bool:
        return self._error is not None

    def take_all(self) -> bytes:
        """Everything queued, at once (a message that arrived whole)."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        self._resume_if_paused()
        return data

    def interrupt(self) -> None:
        """Make a waiting ``read`` return b"" now although the body is not done (the
        reader has something else to attend to; ``done`` tells the two apart).
        Without a waiting reader it does nothing."""
        if self._waiter is not None and not self._waiter.done():
            self._interrupted = True
            self._wake()

    async def read(self, idle_timeout: float) -> bytes:
        """The next chunk, or b"" at the end of the body (or when interrupted)."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.done or self._interrupted:
                self._interrupted = False
                return b""
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(idle_timeout, self._on_idle, self)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._size < self._high_water // 4:
            self._resume_if_paused()
        return chunk

    def _resume_if_paused(self) -> None:
        if self._paused:
            self._paused = False
            self._resume()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
