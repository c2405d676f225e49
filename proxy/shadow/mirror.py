"""The shadow's view of a request: tee the request and the primary's answer.

A ``ShadowTap`` is opened for a sampled request of a shadowed flag. It keeps a
copy of the request body and of the primary's answer as they stream (up to
``shadow.max_body_bytes``; beyond, the shadow is dropped and counted). When the
exchange is done — the client already has its answer — it hands everything to
the ``ShadowService``, which sends the copy to the other backend off the
client's path. Nothing here waits or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.exchange.hooks import ExchangeTap, Outcome
from proxy.http.outgoing import upstream_head
from proxy.shadow.compare import Observed

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange
    from proxy.shadow.service import ShadowFlag, ShadowService

SHADOW_HEADER = b"x-turnout-shadow: 1\r\n"


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per shadow
class ShadowRequest:
    """Everything a shadow needs once the exchange is over (no reference to it)."""

    flag: ShadowFlag
    request_id: str  # the sampling key (calibration samples on it too)
    route: str
    method: str
    path: str
    head: bytes  # the request head for the other backend, marked as a shadow
    body: bytes
    primary_backend: int
    primary: Observed
    # For redaction, read only when a mismatch is logged (not copied per shadow).
    request_headers: list[tuple[bytes, bytes]]
    primary_headers: list[tuple[bytes, bytes]]


class ShadowTap(ExchangeTap):
    __slots__ = (
        "_body",
        "_body_size",
        "_flag",
        "_head",
        "_headers",
        "_over",
        "_request_id",
        "_response",
        "_response_size",
        "_service",
        "_status",
    )

    def __init__(self, flag: ShadowFlag, service: ShadowService, request_id: str) -> None:
        self._flag = flag
        self._service = service
        self._request_id = request_id
        # Chunks as they came (no copy: a small answer is one chunk, joined for free).
        self._body: list[bytes] = []
        self._response: list[bytes] = []
        self._body_size = self._response_size = 0  # each against shadow.max_body_bytes
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._over = False
        self._head: bytes | None = None

    def request_head_sent(self, exchange: Exchange, backend: int, head: bytes) -> None:
        if self._head is None:
            self._head = head  # the first attempt's: what the primary got

    def request_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        self._body_size += len(data)
        self._keep(self._body, self._body_size, data)

    def response_head(
        self, exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._status, self._headers = status, headers
        self._response.clear()  # a fallback attempt's answer replaces the first one
        self._response_size = 0

    def response_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        size = self._response_size = self._response_size + len(data)
        if size <= self._flag.config.max_body_bytes and not self._over:
            self._response.append(data)
        else:
            self._keep(self._response, size, data)

    def finished(self, exchange: Exchange, outcome: Outcome, status: int) -> None:
        if outcome == "cancelled" or exchange.fell_back or self._status in (0, 101):
            return  # nothing whole to compare: the client went away, or it fell back
        if self._over:
            self._service.drop(self._flag, "body_too_large")
            return
        headers = self._flag.header_view(self._headers)
        if headers.get("content-type", "").lower().startswith("text/event-stream"):
            self._service.drop(self._flag, "stream")
        else:
            self._service.launch(self._request(exchange, headers))

    def _keep(self, kept: list[bytes], size: int, data: bytes) -> None:
        """Keep ``data``, unless ``kept`` (``size`` bytes with it) goes over the cap."""
        if self._over:
            return
        if size > self._flag.config.max_body_bytes:
            self._over = True
            self._body.clear()
            self._response.clear()
        else:
            kept.append(data)

    def _request(self, exchange: Exchange, headers: dict[str, str]) -> ShadowRequest:
        request = exchange.request
        body = b"".join(self._body)
        if self._head is not None and not request.has_body:
            head = self._head[:-2] + SHADOW_HEADER + b"\r\n"  # the primary's, marked
        else:  # the body goes as one piece: framed by its length
            framing = b"content-length: %d\r\n" % len(body) if request.has_body else b""
            head = upstream_head(request, exchange.client, framing + SHADOW_HEADER)
        observed = Observed(self._status, headers, b"".join(self._response))
        return ShadowRequest(
            flag=self._flag,
            request_id=self._request_id,
            route=exchange.route.label,
            method=request.method,
            path=request.path,
            head=head,
            body=body,
            primary_backend=exchange.backend,
            primary=observed,
            request_headers=request.raw_headers,
            primary_headers=self._headers,
        )
