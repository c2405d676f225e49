"""The shadow's view of a request: tee the request and the primary's answer.

A ``ShadowTap`` is opened for a sampled request of a shadowed flag. It keeps a
copy of the request body and of the primary's answer as they stream (up to
``shadow.max_body_bytes``; beyond, the shadow is dropped and counted). When the
exchange is done — the client already has its answer — the tap keeps what the
shadow needs of it (no reference to the exchange) and hands *itself* to the
``ShadowService`` as the shadow request: one object per mirrored request,
which is also the ``ShadowCall`` the pipelined sender answers. Nothing here
waits or does I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from proxy.exchange.hooks import Outcome
from proxy.http.outgoing import upstream_head
from proxy.shadow.compare import Observed
from proxy.shadow.pipe import ShadowCall

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange
    from proxy.shadow.service import ShadowFlag, ShadowService

SHADOW_HEADER = b"x-turnout-shadow: 1\r\n"
_log = structlog.get_logger("turnout.shadow")


class ShadowTap(ShadowCall):
    """Follows one sampled request; once it is over, it is the shadow request.

    What the service reads of a finished tap: ``flag``, ``request_id`` (the
    sampling key; calibration samples on it too), ``route``, ``method``,
    ``path``, ``head`` (for the other backend, marked as a shadow), ``body``,
    ``primary_backend``, ``primary`` (the answer the client got), and for
    redaction only, read when a mismatch is logged, ``request_headers`` and
    ``primary_headers``.
    """

    __slots__ = (
        "_body",
        "_body_size",
        "_over",
        "_response",
        "_response_size",
        "_sent_head",
        "_service",
        "_status",
        "body",
        "flag",
        "method",
        "path",
        "primary",
        "primary_backend",
        "primary_headers",
        "request_headers",
        "request_id",
        "route",
    )

    def __init__(self, flag: ShadowFlag, service: ShadowService, request_id: str) -> None:
        self.head = b""  # (ShadowCall's fields, set here: one call less per request)
        self.max_body = flag.config.max_body_bytes
        self.flag = flag
        self._service = service
        self.request_id = request_id
        # Chunks as they came (no copy: a small answer is one chunk, joined for free).
        self._body: list[bytes] = []
        self._response: list[bytes] = []
        self._body_size = self._response_size = 0  # each against shadow.max_body_bytes
        self._status = 0
        self.primary_headers: list[tuple[bytes, bytes]] = []
        self._over = False
        self._sent_head: bytes | None = None

    # -- the exchange's lifecycle points (proxy.exchange.hooks) ---------------------
    def request_head_sent(self, exchange: Exchange, backend: int, head: bytes) -> None:
        if self._sent_head is None:
            self._sent_head = head  # the first attempt's: what the primary got

    def request_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        self._body_size += len(data)
        self._keep(self._body, self._body_size, data)

    def response_head(
        self, exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._status, self.primary_headers = status, headers
        self._response.clear()  # a fallback attempt's answer replaces the first one
        self._response_size = 0

    def response_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        size = self._response_size = self._response_size + len(data)
        if size <= self.max_body and not self._over:
            self._response.append(data)
        else:
            self._keep(self._response, size, data)

    def finished(self, exchange: Exchange, outcome: Outcome, status: int) -> None:
        if outcome == "cancelled" or exchange.fell_back or self._status in (0, 101):
            return  # nothing whole to compare: the client went away, or it fell back
        if self._over:
            self._service.drop(self.flag, "body_too_large")
            return
        headers = self.flag.header_view(self.primary_headers)
        if headers.get("content-type", "").lower().startswith("text/event-stream"):
            self._service.drop(self.flag, "stream")
            return
        self._keep_request(exchange)
        self.primary = Observed(self._status, headers, b"".join(self._response))
        self._service.launch(self)

    # -- the pipelined sender's answer (proxy.shadow.pipe) ----------------------------
    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | None) -> None:
        service = self._service
        try:
            if service.answered(self, status, headers, body):
                service.calibrate(self)  # in flight until calibrated
                return
        except Exception as error:  # a bug here must not go unnoticed, nor stop the others
            _log.error("shadow_failed", flag=self.flag.name, error=repr(error))
        self.flag.in_flight -= 1

    def fail(self, error: Exception) -> None:
        self.flag.in_flight -= 1
        self._service.failed(self, error)

    # -- helpers -------------------------------------------------------------------
    def _keep(self, kept: list[bytes], size: int, data: bytes) -> None:
        """Keep ``data``, unless ``kept`` (``size`` bytes with it) goes over the cap."""
        if self._over:
            return
        if size > self.max_body:
            self._over = True
            self._body.clear()
            self._response.clear()
        else:
            kept.append(data)

    def _keep_request(self, exchange: Exchange) -> None:
        """What the shadow needs of the exchange, which it must not outlive."""
        request = exchange.request
        self.route = exchange.route.label
        self.method = request.method
        self.path = request.path
        self.primary_backend = exchange.backend
        self.request_headers = request.raw_headers
        body = self.body = b"".join(self._body)
        if self._sent_head is not None and not request.has_body:
            self.head = self._sent_head[:-2] + SHADOW_HEADER + b"\r\n"  # the primary's, marked
        else:  # the body goes as one piece: framed by its length
            framing = b"content-length: %d\r\n" % len(body) if request.has_body else b""
            self.head = upstream_head(request, exchange.client, framing + SHADOW_HEADER)
