"""Where features attach to a request's life without touching the relay code.

A feature (shadow mirroring, response comparison, the canary's statistics)
registers a ``TapFactory`` for the flags it serves. For each request of such a
flag the ``Exchange`` asks the factory for an ``ExchangeTap`` (``None`` when it
does not want this request, e.g. not sampled) and calls it at each lifecycle
point. A flag without factories costs nothing: the exchange keeps ``taps`` at
``None`` and every lifecycle point is one ``is None`` test.

The lifecycle points, in order:

- ``request_head_sent``: the head (as the backend got it) went to a backend (again on
  a fallback replay);
- ``request_body_chunk``: a chunk of the request body went upstream;
- ``response_head``: the answer's status and raw headers arrived, before relaying
  (again for a fallback attempt);
- ``response_body_chunk``: a chunk of the answer went to the client;
- ``finished``: once, at the end, with the outcome (``done``, ``failed`` or
  ``cancelled``) and the status the client saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange

Outcome = Literal["done", "failed", "cancelled"]


class ExchangeTap(Protocol):
    """One feature's view of one request. Calls must be quick and must not raise."""

    def request_head_sent(self, exchange: Exchange, backend: int, head: bytes) -> None: ...

    def request_body_chunk(self, exchange: Exchange, data: bytes) -> None: ...

    def response_head(
        self, exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None: ...

    def response_body_chunk(self, exchange: Exchange, data: bytes) -> None: ...

    def finished(self, exchange: Exchange, outcome: Outcome, status: int) -> None: ...


class EndTap:
    """A tap that only wants ``finished``: every other lifecycle point does nothing.
    Subclass it and override ``finished`` (the canary's counting tap does)."""

    __slots__ = ()

    def request_head_sent(self, exchange: Exchange, backend: int, head: bytes) -> None:
        pass

    def request_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        pass

    def response_head(
        self, exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        pass

    def response_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        pass

    def finished(self, exchange: Exchange, outcome: Outcome, status: int) -> None:
        pass


class TapFactory(Protocol):
    """Opens a tap per request of the flags it is registered for."""

    def open(self, exchange: Exchange) -> ExchangeTap | None: ...
