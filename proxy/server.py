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

from proxy.decide import BACKEND_NAMES, LEGACY, decide
from proxy.downstream import ClientConnection, ConnectionLimits, IncomingRequest
from proxy.errors import BodyTooLarge
from proxy.forwarding import StreamAborted, await_response, relay_response, send_request
from proxy.identity import STICKY_COOKIE
from proxy.responses import error_bytes
from proxy.stats import Stats
from proxy.table import BackendTarget, PoolRegistry, RoutingTable
from proxy.tunnel import open_tunnel
from proxy.upstream import UpstreamError

_COOKIE_ATTRIBUTES = b"; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax\r\n"
_BACKEND_LINES = tuple(b"x-turnout-backend: %b\r\n" % name.encode() for name in BACKEND_NAMES)
_log = structlog.get_logger("turnout.proxy")
_access_log = structlog.get_logger("turnout.access")


class ProxyService:
    """Owns the active routing table, the counters and the backend pools of one process."""

    def __init__(self, table: RoutingTable, stats: Stats, pools: PoolRegistry) -> None:
        self.table = table
        self.stats = stats
        self.pools = pools
        self._server: asyncio.Server | None = None
        self._connections: set[ClientConnection] = set()

    def swap_table(self, table: RoutingTable) -> None:
        """Make ``table`` active for new requests; in-flight ones keep theirs."""
        self.table = table
        self.pools.retire_unused(table)

    async def handle(self, request: IncomingRequest, client: ClientConnection) -> bool:
        """Serve one request; returns whether the client connection may stay open."""
        table = self.table
        headers = request.headers
        index = table.matcher.match(request.method, request.path, headers)
        extra = b""
        if index is None:
            route, backend = table.unmatched, LEGACY
        else:
            route = table.routes[index]
            assert route.flag is not None
            backend, assigned_key = decide(
                route.flag, table.identity, headers, client.remote, table.force_header
            )
            if assigned_key is not None:
                extra = b"set-cookie: %b=%b%b" % (
                    STICKY_COOKIE.encode(),
                    assigned_key.encode(),
                    _COOKIE_ATTRIBUTES,
                )
        extra += _BACKEND_LINES[backend]
        target = table.backends[backend]
        started = perf_counter()
        status, keep_open = await self._forward(request, client, table, target, extra)
        elapsed = perf_counter() - started
        route.series[backend].observe(request.method, status, elapsed)
        if table.config.access_log:
            self._log_access(request, client, target.name, status, elapsed)
        return keep_open

    async def _forward(
        self,
        request: IncomingRequest,
        client: ClientConnection,
        table: RoutingTable,
        target: BackendTarget,
        extra: bytes,
    ) -> tuple[int, bool]:
        """(status sent to the client, whether its connection may stay open)."""
        limits = table.config.limits
        try:
            if request.upgrade:
                return await open_tunnel(request, client, target, extra), False
            conn = await send_request(
                request, client, target, limits.max_body_bytes, limits.client_idle_timeout
            )
            await await_response(conn)
            if conn.status >= 500:
                self.stats.count_upstream_error(target.name, "5xx")
            elif self.stats.backend_up[target.name] == 0:
                self.stats.backend_up[target.name] = 1
            return conn.status, await relay_response(request, client, conn, target, extra)
        except UpstreamError as error:
            self._count_failure(target.name, error)
            return self._answer_upstream_error(client, target.name, error, extra), False
        except StreamAborted as aborted:
            self._count_failure(target.name, aborted.error)
            return aborted.status, False
        except BodyTooLarge as error:
            client.write(error_bytes(413, "body_too_large", str(error), close=True, extra=extra))
            return 413, False
        except TimeoutError:
            client.write(error_bytes(408, "request_timeout", "request body too slow", close=True))
            return 408, False
        except ConnectionError:
            return 499, False  # the client went away; nothing left to answer
        except Exception as error:
            _log.exception("proxy_failed", backend=target.name, error=repr(error))
            client.write(error_bytes(500, "internal_error", "internal proxy error", close=True))
            return 500, False

    def _answer_upstream_error(
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

    def _count_failure(self, backend: str, error: UpstreamError) -> None:
        self.stats.count_upstream_error(backend, error.kind)
        if error.kind in ("connect_error", "timeout"):
            self.stats.backend_up[backend] = 0
        _log.warning("upstream_error", backend=backend, kind=error.kind, error=str(error))

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
