"""A request as the client sent it: the parsed head, and its body as it arrives.

Also the per-connection limits the listener enforces while parsing.
"""

from __future__ import annotations

from typing import Protocol

from proxy.http.flow import ChunkQueue

_BODY_HIGH_WATER = 256 * 1024


def _client_body_idle(body: ChunkQueue) -> None:
    body.fail(TimeoutError("client sent no body data in time"))


def _nothing(*_: object) -> None:
    pass


EMPTY_BODY = ChunkQueue(_nothing, _nothing, _nothing, _BODY_HIGH_WATER)
"""The body of every request without one: finished from the start, so reading it
gives b"" and failing it does nothing. Shared, immutable in use (nothing feeds
it), and saves most requests a queue of their own."""
EMPTY_BODY.finish()


class ReadControl(Protocol):
    """What a request body needs of its connection: stop and restart reading."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class IncomingRequest:
    """One parsed request head; ``headers`` has lower-case names (first value wins).

    ``target`` is already normalised (``proxy.http.paths``): routing reads ``path``
    from it and the backend receives it, so both see the same path.
    """

    __slots__ = (
        "body",
        "body_started",
        "chunked",
        "content_length",
        "expect_continue",
        "head_bytes",
        "headers",
        "keep_alive",
        "method",
        "pending_bytes",
        "raw_headers",
        "replay_chunks",
        "target",
        "upgrade",
        "version",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = "1.1"
        self.headers: dict[str, str] = {}
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.keep_alive = True
        self.upgrade = False
        self.head_bytes = 0
        self.pending_bytes = 0
        self.body = EMPTY_BODY  # a queue of its own once the head says there is a body
        self.body_started = False
        # The body as sent so far, kept for a fallback replay (None: not kept).
        self.replay_chunks: list[bytes] | None = None

    @property
    def path(self) -> str:
        query_at = self.target.find("?")
        return self.target if query_at < 0 else self.target[:query_at]

    def expect_body(self, conn: ReadControl) -> None:
        """The head announced a body: a queue to stream it through, which pauses and
        resumes reading ``conn``."""
        self.body = ChunkQueue(
            conn.pause_reading, conn.resume_reading, _client_body_idle, _BODY_HIGH_WATER
        )

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class ConnectionLimits:
    """The per-connection limits, fixed when the listener starts."""

    __slots__ = ("idle_timeout", "max_head_bytes", "max_line_bytes")

    def __init__(self, max_head_bytes: int, max_line_bytes: int, idle_timeout: float) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_line_bytes = max_line_bytes
        self.idle_timeout = idle_timeout
