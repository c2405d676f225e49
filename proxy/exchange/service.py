"""The proxy listener: match → decide → forward → observe.

``ProxyService.handle`` is the whole hot path. It reads ``self.table`` once per
request, so a reload (one reference swap) never changes the config under a
request in flight.
"""

from __future__ import annotations

import asyncio
import time
from time import perf_counter

import structlog

from proxy.decision.decide import decide
from proxy.decision.flag_rule import FlagRule
from proxy.decision.identity import STICKY_COOKIE
from proxy.decision.sides import BACKEND_NAMES, LEGACY
from proxy.decision.table import UNMATCHED_FLAG, RoutingTable
from proxy.exchange.relay import (
    can_replay_body,
    relay_response,
    send_request,
)
from proxy.http.downstream import ClientConnection, ConnectionLimits, IncomingRequest
from proxy.http.errors import BodyTooLarge, StreamAborted, UpstreamError
from proxy.http.pool import BackendTarget, PoolRegistry
from proxy.http.tunnel import open_tunnel
from proxy.http.upstream import UpstreamConnection
from proxy.http.wire import error_bytes
from proxy.observe.stats import Stats
from proxy.resilience.fallback import FallbackPolicy
from proxy.resilience.health import HealthRegistry

ProxyTable = RoutingTable[BackendTarget]
"""The routing table as the data plane compiles it: its targets are connection pools."""

_COOKIE_ATTRIBUTES = b"; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax\r\n"
_BACKEND_LINES = tuple(b"x-turnout-backend: %b\r\n" % name.encode() for name in BACKEND_NAMES)
_FALLBACK_LINE = b"x-turnout-fallback: 1\r\n"
_log = structlog.get_logger("turnout.proxy")
_access_log = structlog.get_logger("turnout.access")


class ProxyService:
    """Owns the active routing table, the counters and the backend pools of one process."""

    def __init__(
        self, table: ProxyTable, stats: Stats, pools: PoolRegistry, health: HealthRegistry
    ) -> None:
        self.table = table
        self.stats = stats
        self.pools = pools
        self.health = health
        self._server: asyncio.Server | None = None
        self._connections: set[ClientConnection] = set()

    def swap_table(self, table: ProxyTable) -> None:
        """Make ``table`` active for new requests; in-flight ones keep theirs."""
        self.table = table
        self.pools.retire_unused(table.backends)

    async def handle(self, request: IncomingRequest, client: ClientConnection) -> bool:
        """Serve one request; returns whether the client connection may stay open."""
        table = self.table
        headers = request.headers
        index = table.matcher.match(request.method, request.path, headers)
        cookie = b""
        flag = None
        if index is None:
            route, backend = table.unmatched, LEGACY
        else:
            route = table.routes[index]
            flag = route.flag
            assert flag is not None
            backend, assigned_key = decide(
                flag, table.identity, headers, client.remote, table.force_header
            )
            if assigned_key is not None:
                cookie = b"set-cookie: %b=%b%b" % (
                    STICKY_COOKIE.encode(),
                    assigned_key.encode(),
                    _COOKIE_ATTRIBUTES,
                )
        if self.health.degraded:
            backend = self._avoid_unusable(flag, backend)
        started = perf_counter()
        status, keep_open, backend = await self._exchange(
            request, client, table, flag, backend, cookie
        )
        elapsed = perf_counter() - started
        route.series[backend].observe(request.method, status, elapsed)
        if table.config.access_log:
            self._log_access(request, client, BACKEND_NAMES[backend], status, elapsed)
        return keep_open

    def _avoid_unusable(self, flag: FlagRule | None, backend: int) -> int:
        """Step 5: not an ejected/unhealthy backend while the other is usable (a failover)."""
        chosen, failover = self.health.choose(backend, time.monotonic())
        if failover:
            self._count_fallback(flag, backend, chosen, "ejected")
        return chosen

    async def _exchange(
        self,
        request: IncomingRequest,
        client: ClientConnection,
        table: ProxyTable,
        flag: FlagRule | None,
        backend: int,
        cookie: bytes,
    ) -> tuple[int, bool, int]:
        """(status sent, whether the client connection may stay open, backend that answered)."""
        if request.upgrade:
            target = table.backends[backend]
            lines = cookie + _BACKEND_LINES[backend]
            try:
                return await open_tunnel(request, client, target, lines), False, backend
            except UpstreamError as error:
                self._count_failure(backend, error)
                return self._answer_error(client, target.name, error, lines), False, backend
        policy = flag.fallback if flag is not None else None
        now = asyncio.get_running_loop().time()
        deadline = now + table.config.request_timeout
        fell_back = False
        try:
            if policy is None:  # the common case: one attempt, nothing to replay
                conn = await self._attempt(request, client, table, backend, deadline, None)
                target = table.backends[backend]
                lines = cookie + _BACKEND_LINES[backend]
                return (
                    conn.status,
                    await relay_response(request, client, conn, target, lines),
                    backend,
                )
            assert flag is not None and flag.budget is not None
            flag.budget.count_request(now)
            try:
                conn = await self._attempt(request, client, table, backend, deadline, policy)
            except UpstreamError as error:
                if not self._may_replay(
                    flag,
                    request,
                    policy is not None and policy.covers_error(error.kind, request.method),
                ):
                    raise
                backend = self._fall_back(flag, backend, error.kind)
                fell_back = True
                conn = await self._attempt(request, client, table, backend, deadline, policy)
            else:
                if self._may_replay(
                    flag,
                    request,
                    policy is not None and policy.covers_status(conn.status, request.method),
                ):
                    conn.close()
                    backend = self._fall_back(flag, backend, str(conn.status))
                    fell_back = True
                    conn = await self._attempt(request, client, table, backend, deadline, policy)
            lines = cookie + _BACKEND_LINES[backend] + (_FALLBACK_LINE if fell_back else b"")
            target = table.backends[backend]
            return conn.status, await relay_response(request, client, conn, target, lines), backend
        except UpstreamError as error:
            lines = cookie + _BACKEND_LINES[backend] + (_FALLBACK_LINE if fell_back else b"")
            status = self._answer_error(client, BACKEND_NAMES[backend], error, lines)
            return status, False, backend
        except StreamAborted as aborted:
            self._count_failure(backend, aborted.error)
            return aborted.status, False, backend
        except BodyTooLarge as error:
            client.write(error_bytes(413, "body_too_large", str(error), close=True))
            return 413, False, backend
        except TimeoutError:
            client.write(error_bytes(408, "request_timeout", "request body too slow", close=True))
            return 408, False, backend
        except ConnectionError:
            return 499, False, backend  # the client went away; nothing left to answer
        except Exception as error:
            _log.exception("proxy_failed", backend=BACKEND_NAMES[backend], error=repr(error))
            client.write(error_bytes(500, "internal_error", "internal proxy error", close=True))
            return 500, False, backend

    async def _attempt(
        self,
        request: IncomingRequest,
        client: ClientConnection,
        table: ProxyTable,
        backend: int,
        deadline: float,
        policy: FallbackPolicy | None,
    ) -> UpstreamConnection:
        """One try at one backend, up to its response head; feeds passive health."""
        limits = table.config.limits
        try:
            conn = await send_request(
                request,
                client,
                table.backends[backend],
                max_body=limits.max_body_bytes,
                idle_timeout=limits.client_idle_timeout,
                deadline=deadline,
                replay_limit=policy.max_replay_body if policy is not None else 0,
            )
            waiter = conn.headers_done
            assert waiter is not None
            try:
                await waiter  # bounded by the connection's own response timer
            except BaseException:
                conn.close()
                raise
        except UpstreamError as error:
            self._count_failure(backend, error)
            raise
        health = self.health.backends[backend]
        if conn.status >= 500:
            self.stats.count_upstream_error(BACKEND_NAMES[backend], "5xx")
            health.record_failure(time.monotonic())
        else:
            health.record_success()
        return conn

    def _may_replay(
        self, flag: FlagRule | None, request: IncomingRequest, covered: bool | None
    ) -> bool:
        """Covered by the policy, the body can be sent again, and the budget allows."""
        if not covered or flag is None or flag.budget is None:
            return False
        if not can_replay_body(request):
            _log.info("fallback_impossible", flag=flag.name, reason="body larger than kept")
            return False
        if not flag.budget.try_spend(asyncio.get_running_loop().time()):
            _log.debug("fallback_over_budget", flag=flag.name)
            return False
        return True

    def _fall_back(self, flag: FlagRule | None, backend: int, reason: str) -> int:
        other = 1 - backend
        self._count_fallback(flag, backend, other, reason)
        return other

    def _count_fallback(self, flag: FlagRule | None, source: int, to: int, reason: str) -> None:
        key = (
            flag.name if flag else UNMATCHED_FLAG,
            BACKEND_NAMES[source],
            BACKEND_NAMES[to],
            reason,
        )
        self.stats.fallbacks[key] = self.stats.fallbacks.get(key, 0) + 1

    def _answer_error(
        self, client: ClientConnection, backend: str, error: UpstreamError, extra: bytes
    ) -> int:
        """502 for an unreachable or broken backend, 504 for one that did not answer in time."""
        if error.kind == "timeout":
            status, code = 504, "backend_timeout"
        elif error.kind == "connect_error":
            status, code = 502, "backend_unreachable"
        else:
            status, code = 502, "backend_error"
        client.write(
            error_bytes(status, code, f"{backend} backend: {error}", close=True, extra=extra)
        )
        return status

    def _count_failure(self, backend: int, error: UpstreamError) -> None:
        name = BACKEND_NAMES[backend]
        self.stats.count_upstream_error(name, error.kind)
        if error.kind != "reset" or not error.response_started:
            self.health.backends[backend].record_failure(time.monotonic())
        _log.warning("upstream_error", backend=name, kind=error.kind, error=str(error))

    def _log_access(
        self,
        request: IncomingRequest,
        client: ClientConnection,
        backend: str,
        status: int,
        elapsed: float,
    ) -> None:
        _access_log.info(
            "access",
            method=request.method,
            path=request.path,
            status=status,
            backend=backend,
            seconds=round(elapsed, 6),
            remote=client.remote,
        )

    # -- lifecycle ---------------------------------------------------------
    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        limits = self.table.config.limits
        connection_limits = ConnectionLimits(
            max_head_bytes=limits.max_header_bytes,
            max_line_bytes=limits.max_line_bytes,
            idle_timeout=limits.client_idle_timeout,
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self.handle, connection_limits, self._connections),
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to drain_timeout), close pools."""
        if self._server is not None:
            self._server.close()
            deadline = time.monotonic() + self.table.config.drain_timeout
            while self._connections and time.monotonic() < deadline:
                for conn in list(self._connections):
                    conn.draining = True
                    if conn.idle:
                        conn.close()
                await asyncio.sleep(0.05)
            for conn in list(self._connections):
                conn.abort()
            self._server = None
        self.pools.close()
