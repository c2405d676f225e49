"""The proxy listener: match → decide → forward → observe, on aiohttp's low-level server.

aiohttp's low-level ``web.Server`` (no Application, router or middlewares) parses
requests with its C parser; ``ProxyService.handle`` is the whole hot path. It
reads ``self.table`` once per request, so a reload (one reference swap) never
changes the config under a request in flight.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from proxy.decide import LEGACY, decide
from proxy.errors import BodyTooLarge, error_response, upstream_error_response
from proxy.forwarding import StreamAborted, await_response, relay_response, send_request
from proxy.identity import STICKY_COOKIE
from proxy.log import AccessLogger
from proxy.stats import Stats
from proxy.table import CompiledRoute, PoolRegistry, RoutingTable
from proxy.upstream import UpstreamError
from proxy.websocket import is_websocket_upgrade, new_session, proxy_websocket

BACKEND_HEADER = "x-turnout-backend"
_COOKIE_ATTRIBUTES = "; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"
_log = structlog.get_logger("turnout.proxy")


class ProxyService:
    """Owns the active routing table, the counters and the backend pools of one process."""

    def __init__(self, table: RoutingTable, stats: Stats, pools: PoolRegistry) -> None:
        self.table = table
        self.stats = stats
        self.pools = pools
        self._runner: web.ServerRunner | None = None
        self._ws_session: aiohttp.ClientSession | None = None

    def swap_table(self, table: RoutingTable) -> None:
        """Make ``table`` active for new requests; in-flight ones keep theirs."""
        self.table = table
        self.pools.retire_unused(table)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        table = self.table
        raw_path = request.raw_path
        query_at = raw_path.find("?")
        path = raw_path if query_at < 0 else raw_path[:query_at]
        headers = request.headers
        remote = request.remote
        index = table.matcher.match(request.method, path, headers)
        assigned_key: str | None = None
        if index is None:
            route, backend = table.unmatched, LEGACY
        else:
            route = table.routes[index]
            assert route.flag is not None
            backend, assigned_key = decide(
                route.flag, table.identity, headers, remote, table.force_header
            )
        extra: tuple[tuple[str, str], ...] = ((BACKEND_HEADER, table.backends[backend].name),)
        if assigned_key is not None:
            extra += (("Set-Cookie", f"{STICKY_COOKIE}={assigned_key}{_COOKIE_ATTRIBUTES}"),)
        if is_websocket_upgrade(headers):
            return await self._websocket(request, route, backend, extra, remote)
        return await self._forward(request, table, route, backend, remote, extra)

    async def _forward(
        self,
        request: web.BaseRequest,
        table: RoutingTable,
        route: CompiledRoute,
        backend: int,
        remote: str | None,
        extra: tuple[tuple[str, str], ...],
    ) -> web.StreamResponse:
        target = table.backends[backend]
        limits = table.config.limits
        started = perf_counter()
        response: web.StreamResponse
        try:
            conn = await send_request(
                request, target, remote, limits.max_body_bytes, limits.client_idle_timeout
            )
            await await_response(conn)
            if conn.status >= 500:
                self.stats.count_upstream_error(target.name, "5xx")
            response = await relay_response(request, conn, target, extra)
        except UpstreamError as error:
            self._count_failure(target.name, error)
            response = upstream_error_response(target.name, error)
            response.headers.extend(extra)
        except StreamAborted as aborted:
            self._count_failure(target.name, aborted.error)
            response = aborted.response
        except BodyTooLarge as error:
            response = error_response(413, "body_too_large", str(error))
            response.force_close()
        except (asyncio.CancelledError, ConnectionError):
            raise  # the client went away; aiohttp closes the connection
        except Exception as error:
            _log.exception("proxy_failed", backend=target.name, error=repr(error))
            response = error_response(500, "internal_error", "internal proxy error")
            response.headers.extend(extra)
        route.series[backend].observe(request.method, response.status, perf_counter() - started)
        return response

    async def _websocket(
        self,
        request: web.BaseRequest,
        route: CompiledRoute,
        backend: int,
        extra: tuple[tuple[str, str], ...],
        remote: str | None,
    ) -> web.StreamResponse:
        if self._ws_session is None:
            self._ws_session = new_session()
        started = perf_counter()
        target = self.table.backends[backend]
        response = await proxy_websocket(request, target, self._ws_session, extra, remote)
        route.series[backend].observe(request.method, response.status, perf_counter() - started)
        return response

    def _count_failure(self, backend: str, error: UpstreamError) -> None:
        self.stats.count_upstream_error(backend, error.kind)
        if error.kind in ("connect_error", "timeout"):
            self.stats.backend_up[backend] = 0
        _log.warning("upstream_error", backend=backend, kind=error.kind, error=str(error))

    # -- lifecycle ---------------------------------------------------------
    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        config = self.table.config
        limits = config.limits
        server = _ProxyHttpServer(
            self.handle,
            handler_cancellation=True,
            access_log_class=AccessLogger,
            access_log=_log if config.access_log else None,
            max_line_size=limits.max_line_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=128,
            keepalive_timeout=limits.client_idle_timeout,
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=config.drain_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port, backlog=1024)
        await site.start()
        bound = self._runner.addresses[0]
        return int(bound[1])

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to drain_timeout), close pools."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._ws_session is not None:
            await self._ws_session.close()
            self._ws_session = None
        self.pools.close()


class _ProxyRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own parse errors as JSON 4xx."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        if isinstance(exc, LineTooLong):
            response = error_response(431, "header_too_large", "request header is too large")
        elif isinstance(exc, HttpProcessingError):
            text = str(exc.message) if exc.message else "malformed request"
            if "too many headers" in text.lower():
                response = error_response(431, "too_many_headers", text)
            else:
                response = error_response(400, "bad_request", text)
        else:
            _log.error("handler_failed", error=repr(exc), exc_info=exc)
            response = error_response(500, "internal_error", "internal proxy error")
        response.force_close()
        return response


class _ProxyHttpServer(web.Server):
    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return _ProxyRequestHandler(self, loop=self._loop, **kwargs)
