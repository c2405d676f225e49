"""Write backpressure shared by both sides' protocols.

asyncio calls a protocol's ``pause_writing``/``resume_writing`` when its
transport's buffer crosses the high/low water marks; the coroutine writing a
body awaits ``wait()`` after each chunk, so a slow reader slows the writer
instead of growing the buffer.
"""

from __future__ import annotations

import asyncio
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
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        """The connection is gone: a writer waiting for room gets ``error``."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
            waiter.exception()  # the writer may be gone too: never log it as unretrieved

    async def wait(self) -> None:
        """Return at once unless the buffer is full; then wait until it drained."""
        if not self._paused:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


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
