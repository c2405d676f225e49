"""Every error type of the data path, in one place.

Each says what went wrong and, where it matters, how it is counted or answered.
"""

from __future__ import annotations


class BodyTooLarge(Exception):
    """The request body is over ``limits.max_body_bytes`` (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


class Rejection(Exception):
    """A request the proxy answers itself with a 4xx before closing (bad or oversized head)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class UpstreamError(Exception):
    """A failure talking to a backend; ``kind`` is the metric label."""

    kind = "reset"

    def __init__(self, message: str, *, response_started: bool = False) -> None:
        super().__init__(message)
        self.response_started = response_started
        # On a connection the pool handed out again: it may have been closed by the
        # backend just as the request went out (the keep-alive race).
        self.reused = False


class UpstreamConnectError(UpstreamError):
    """Nothing reached the backend: safe to replay any method elsewhere."""

    kind = "connect_error"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class UpstreamReset(UpstreamError):
    """The connection broke, or the answer was not valid HTTP."""

    kind = "reset"


class StreamAborted(Exception):
    """The backend failed after the response had started; the client connection was cut."""

    def __init__(self, status: int, error: UpstreamError) -> None:
        super().__init__(str(error))
        self.status = status
        self.error = error


class UpstreamOverloaded(Exception):
    """Every connection to a backend is in use (``max_connections``) and none came free
    within the connect timeout; answered 503 ``backend_overloaded``.

    Deliberately not an ``UpstreamError``: the backend did not fail, the proxy's own
    cap held the request back. So it is not counted in
    ``turnout_upstream_errors_total``, not fed to passive health (an overloaded pool
    is not a sick backend), and not replayed on the other backend (a fallback would
    shift a load spike onto a backend sized for its own share).
    """
