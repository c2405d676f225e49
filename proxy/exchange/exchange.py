"""The Exchange: one request's life, from the decision to the observation at the end.

``ProxyService.handle`` matches and decides, then hands the request to an
``Exchange``, which owns the rest: the attempt at the chosen backend, a
fallback replay on the other one when the flag's policy allows, relaying the
answer, mapping failures to the proxy's own answers, feeding passive health,
and the observation (counters, access log, taps) when it ends. Features attach
through ``proxy.exchange.hooks``; the relay code in ``proxy.exchange.relay``
reports to them.
"""

from __future__ import annotations

import asyncio
import time
from time import perf_counter
from typing import TYPE_CHECKING

import structlog

from proxy.decision.flag_rule import FlagRule
from proxy.decision.sides import BACKEND_NAMES
from proxy.decision.table import UNMATCHED_FLAG, CompiledRoute
from proxy.exchange.hooks import ExchangeTap, Outcome
from proxy.exchange.relay import can_replay_body, relay_response, send_request
from proxy.exchange.upgrade import open_tunnel
from proxy.http.downstream import ClientConnection
from proxy.http.errors import BodyTooLarge, StreamAborted, UpstreamError, UpstreamOverloaded
from proxy.http.request import IncomingRequest
from proxy.http.upstream import UpstreamConnection
from proxy.http.wire import error_bytes
from proxy.observe.stats import Stats
from proxy.resilience.fallback import FallbackPolicy

if TYPE_CHECKING:
    from proxy.exchange.service import ProxyService, ProxyTable

_BACKEND_LINES = tuple(b"x-turnout-backend: %b\r\n" % name.encode() for name in BACKEND_NAMES)
_FALLBACK_LINE = b"x-turnout-fallback: 1\r\n"
# RFC 9110 §9.2.2: methods a client may send twice with the effect of once.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# The proxy's own answer to a failed attempt, by error kind: 504 for a backend that
# did not answer in time, 502 for an unreachable or broken one. A fallback counts the
# failed attempt with the same status the client would have got.
_ERROR_ANSWERS = {
    "timeout": (504, "backend_timeout"),
    "connect_error": (502, "backend_unreachable"),
}
_OTHER_ERROR = (502, "backend_error")
_log = structlog.get_logger("turnout.proxy")
_access_log = structlog.get_logger("turnout.access")


class Exchange:
    """One request through the proxy; ``run`` serves it and reports how it ended."""

    __slots__ = (
        "backend",
        "client",
        "cookie",
        "deadline",
        "fell_back",
        "flag",
        "request",
        "route",
        "service",
        "started",
        "status",
        "streamed_at",
        "table",
        "taps",
        "upstream_seconds",
    )

    def __init__(
        self,
        service: ProxyService,
        table: ProxyTable,
        request: IncomingRequest,
        client: ClientConnection,
        route: CompiledRoute,
        backend: int,
        cookie: bytes,
    ) -> None:
        self.service = service
        self.table = table
        self.request = request
        self.client = client
        self.route = route
        self.flag: FlagRule | None = route.flag
        self.backend = backend  # the side serving now (changes on a fallback)
        self.cookie = cookie  # a ready set-cookie line for a new sticky key, or b""
        self.fell_back = False
        self.status = 0  # the status the client saw (499: it went away first)
        self.taps: list[ExchangeTap] | None = None
        # Loop time by which all attempts must have their answer (request_timeout);
        # 0 until the request body has been received: uploads are bounded by idle
        # timeouts, not by this.
        self.deadline = 0.0
        self.started = 0.0
        self.streamed_at = 0.0  # when a streamed response's head went to the client
        self.upstream_seconds = 0.0  # waiting for backends: attempt start to response head

    async def run(self) -> bool:
        """Serve the request; returns whether the client connection may stay open."""
        self.started = perf_counter()
        try:
            keep_open = await self._serve()
        except asyncio.CancelledError:
            # The client went away (or the proxy is stopping): count it all the same.
            if not self.streamed_at:
                self.status = 499
            self._observe("cancelled")
            raise
        self._observe("done" if self.status < 500 else "failed")
        return keep_open

    def _observe(self, outcome: Outcome) -> None:
        """Count the request; latency is the time to the response head for a stream."""
        elapsed = (self.streamed_at or perf_counter()) - self.started
        self.route.series[self.backend].observe(self.request.method, self.status, elapsed)
        if self.upstream_seconds:  # an answer the proxy gave alone has no wait to subtract
            self.service.stats.overhead.observe(elapsed - self.upstream_seconds)
        if self.table.config.access_log:
            self._log_access(elapsed)
        taps = self.taps
        if taps is not None:
            for tap in taps:
                tap.finished(self, outcome, self.status)

    # -- the attempts ---------------------------------------------------------
    async def _serve(self) -> bool:
        if self.request.upgrade:
            return await self._upgrade()
        try:
            return await self._forward()
        except UpstreamError as error:
            self.status = self._answer_error(error)
        except StreamAborted as aborted:
            self._count_failure(aborted.error)
            self.status = aborted.status
        except UpstreamOverloaded as error:  # max_connections: no health, no fallback
            _log.warning("upstream_overloaded", backend=self.backend_name, error=str(error))
            message = f"{self.backend_name} backend: {error}"
            extra = self._extra_lines()
            self.client.write(
                error_bytes(503, "backend_overloaded", message, close=True, extra=extra)
            )
            self.status = 503
        except BodyTooLarge as error:
            self.client.write(error_bytes(413, "body_too_large", str(error), close=True))
            self.status = 413
        except TimeoutError:
            message = "request body too slow"
            self.client.write(error_bytes(408, "request_timeout", message, close=True))
            self.status = 408
        except ConnectionError:
            self.status = 499  # the client went away; nothing left to answer
        except Exception as error:
            _log.exception("proxy_failed", backend=self.backend_name, error=repr(error))
            message = "internal proxy error"
            self.client.write(error_bytes(500, "internal_error", message, close=True))
            self.status = 500
        return False

    async def _forward(self) -> bool:
        """The attempt at the chosen backend, a replay on the other when the policy
        allows, then the relay of whichever answer stands."""
        flag, request = self.flag, self.request
        policy = flag.fallback if flag is not None else None
        loop_now = asyncio.get_running_loop().time()
        if request.body.done:  # no body, or all of it already here
            self.deadline = loop_now + self.table.config.request_timeout
        if policy is not None:
            assert flag is not None and flag.budget is not None
            flag.budget.count_request(loop_now)
        try:
            conn = await self._attempt(policy)
        except UpstreamError as error:
            if policy is None or not self._may_replay(
                policy.covers_error(error.kind, request.method)
            ):
                raise
            self._fall_back(error.kind, _ERROR_ANSWERS.get(error.kind, _OTHER_ERROR)[0])
            conn = await self._attempt(policy)
        else:
            if policy is not None and self._may_replay(
                policy.covers_status(conn.status, request.method)
            ):
                conn.close()
                self._fall_back(str(conn.status), conn.status)
                conn = await self._attempt(policy)
        self.status = conn.status
        target = self.table.backends[self.backend]
        return await relay_response(self, conn, target, self._extra_lines())

    async def _attempt(self, policy: FallbackPolicy | None) -> UpstreamConnection:
        """One try at the current backend, up to its response head; feeds passive health.

        A pooled connection that the backend closed just as the request went out
        (the keep-alive race) is no backend failure: a request that is safe to
        repeat is sent again, once, on a fresh connection (as Go's Transport and
        Envoy do); anything else fails as it is.
        """
        backend = self.backend
        replay_limit = policy.max_replay_body if policy is not None else 0
        try:
            try:
                conn = await self._send_and_wait(replay_limit, fresh=False)
            except UpstreamError as error:
                if not self._stale_and_repeatable(error):
                    raise
                _log.debug("stale_connection_retried", backend=self.backend_name)
                conn = await self._send_and_wait(replay_limit, fresh=True)
        except UpstreamError as error:
            self._count_failure(error)
            raise
        health = self.service.health.backends[backend]
        if conn.status >= 500:
            self.service.stats.count_upstream_error(BACKEND_NAMES[backend], "5xx")
            health.record_failure(time.monotonic())
        else:
            health.record_success()
        taps = self.taps
        if taps is not None:
            for tap in taps:
                tap.response_head(self, conn.status, conn.raw_headers)
        return conn

    async def _send_and_wait(self, replay_limit: int, *, fresh: bool) -> UpstreamConnection:
        target = self.table.backends[self.backend]
        began = perf_counter()
        try:
            conn = await send_request(self, target, replay_limit=replay_limit, fresh=fresh)
            waiter = conn.headers_done
            assert waiter is not None
            try:
                await waiter  # bounded by the connection's own response timer
            except BaseException:
                conn.close()
                raise
        finally:
            self.upstream_seconds += perf_counter() - began
        return conn

    def _stale_and_repeatable(self, error: UpstreamError) -> bool:
        """A reset before any answer on a reused connection, for a request that may
        be sent twice: an idempotent method whose body (if any) can be sent again."""
        return (
            error.reused
            and error.kind == "reset"
            and not error.response_started
            and self.request.method in _IDEMPOTENT
            and can_replay_body(self.request)
        )

    async def _upgrade(self) -> bool:
        target = self.table.backends[self.backend]
        lines = self._extra_lines()
        try:
            self.status = await open_tunnel(self, target, lines)
        except UpstreamError as error:
            self._count_failure(error)
            self.status = self._answer_error(error)
        return False

    # -- fallback -------------------------------------------------------------
    def _may_replay(self, covered: bool) -> bool:
        """Covered by the policy, the body can be sent again, and the budget allows."""
        flag = self.flag
        if not covered or flag is None or flag.budget is None:
            return False
        if not can_replay_body(self.request):
            _log.info("fallback_impossible", flag=flag.name, reason="body larger than kept")
            return False
        if not flag.budget.try_spend(asyncio.get_running_loop().time()):
            _log.debug("fallback_over_budget", flag=flag.name)
            return False
        return True

    def _fall_back(self, reason: str, failed_status: int) -> None:
        """Move to the other backend; the failed attempt counts against the one that failed."""
        failed, other = self.backend, 1 - self.backend
        elapsed = perf_counter() - self.started
        self.route.series[failed].observe(self.request.method, failed_status, elapsed)
        count_fallback(self.service.stats, self.flag, failed, other, reason)
        self.backend = other
        self.fell_back = True

    # -- failures -------------------------------------------------------------
    def _answer_error(self, error: UpstreamError) -> int:
        """The proxy's JSON answer for a failed attempt (see ``_ERROR_ANSWERS``)."""
        status, code = _ERROR_ANSWERS.get(error.kind, _OTHER_ERROR)
        message = f"{self.backend_name} backend: {error}"
        self.client.write(
            error_bytes(status, code, message, close=True, extra=self._extra_lines())
        )
        return status

    def _count_failure(self, error: UpstreamError) -> None:
        name = self.backend_name
        self.service.stats.count_upstream_error(name, error.kind)
        if error.kind != "reset" or not error.response_started:
            self.service.health.backends[self.backend].record_failure(time.monotonic())
        _log.warning("upstream_error", backend=name, kind=error.kind, error=str(error))

    # -- helpers --------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return BACKEND_NAMES[self.backend]

    def _extra_lines(self) -> bytes:
        """The proxy's own response header lines: sticky cookie, backend, fallback."""
        lines = self.cookie + _BACKEND_LINES[self.backend]
        return lines + _FALLBACK_LINE if self.fell_back else lines

    def _log_access(self, elapsed: float) -> None:
        _access_log.info(
            "access",
            method=self.request.method,
            path=self.request.path,
            status=self.status,
            backend=self.backend_name,
            seconds=round(elapsed, 6),
            remote=self.client.remote,
        )


def count_fallback(
    stats: Stats, flag: FlagRule | None, source: int, to: int, reason: str
) -> None:
    """One request moved from ``source`` to ``to`` (a fallback or a failover)."""
    key = (flag.name if flag else UNMATCHED_FLAG, BACKEND_NAMES[source], BACKEND_NAMES[to], reason)
    stats.fallbacks[key] = stats.fallbacks.get(key, 0) + 1
