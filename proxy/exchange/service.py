"""The proxy listener: match → decide, then an ``Exchange`` forwards and observes.

``ProxyService.handle`` is the start of the hot path. It reads ``self.table``
once per request, so a reload (one reference swap) never changes the config
under a request in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from proxy.decision.decide import decide
from proxy.decision.flag_rule import FlagRule
from proxy.decision.identity import STICKY_COOKIE
from proxy.decision.sides import LEGACY
from proxy.decision.table import RoutingTable
from proxy.exchange.exchange import Exchange, count_fallback
from proxy.exchange.hooks import TapFactory
from proxy.http.downstream import ClientConnection
from proxy.http.listener import Listener, open_listener
from proxy.http.pool import BackendTarget, PoolRegistry
from proxy.http.request import ConnectionLimits, IncomingRequest
from proxy.observe.stats import Stats
from proxy.resilience.health import HealthRegistry

ProxyTable = RoutingTable[BackendTarget]
"""The routing table as the data plane compiles it: its targets are connection pools."""

_COOKIE_ATTRIBUTES = b"; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax\r\n"


class ProxyService:
    """Owns the active routing table, the counters and the backend pools of one process."""

    def __init__(
        self, table: ProxyTable, stats: Stats, pools: PoolRegistry, health: HealthRegistry
    ) -> None:
        self.table = table
        self.stats = stats
        self.pools = pools
        self.health = health
        # Features' per-flag hooks (see proxy.exchange.hooks); empty costs nothing.
        self.tap_factories: dict[str, tuple[TapFactory, ...]] = {}
        self._taps_by_feature: dict[str, Mapping[str, TapFactory]] = {}
        # Called with every new table (after a reload), e.g. to re-register taps.
        self.table_listeners: list[Callable[[ProxyTable], None]] = []
        self._server: Listener | None = None
        self._connections: set[ClientConnection] = set()

    def swap_table(self, table: ProxyTable) -> None:
        """Make ``table`` active for new requests; in-flight ones keep theirs."""
        self.table = table
        self.pools.retire_unused(table.backends)
        for listener in self.table_listeners:
            listener(table)

    def set_taps(self, feature: str, by_flag: Mapping[str, TapFactory]) -> None:
        """Replace one feature's tap factories (by flag name); features add up per flag."""
        self._taps_by_feature[feature] = dict(by_flag)
        merged: dict[str, tuple[TapFactory, ...]] = {}
        for factories in self._taps_by_feature.values():
            for flag, factory in factories.items():
                merged[flag] = (*merged.get(flag, ()), factory)
        self.tap_factories = merged

    async def handle(self, request: IncomingRequest, client: ClientConnection) -> bool:
        """Match and decide, then let an ``Exchange`` serve the request; returns whether
        the client connection may stay open."""
        table = self.table
        headers = request.headers
        index = table.matcher.match(request.method, request.path, headers)
        cookie = b""
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
            backend = self._avoid_unusable(route.flag, backend)
        exchange = Exchange(self, table, request, client, route, backend, cookie)
        if self.tap_factories and route.flag is not None:
            self._open_taps(exchange, route.flag.name)
        return await exchange.run()

    def _avoid_unusable(self, flag: FlagRule | None, backend: int) -> int:
        """Not an ejected/unhealthy backend while the other is usable (a failover)."""
        chosen, failover = self.health.choose(backend, time.monotonic())
        if failover:
            count_fallback(self.stats, flag, backend, chosen, "ejected")
        return chosen

    def _open_taps(self, exchange: Exchange, flag: str) -> None:
        factories = self.tap_factories.get(flag)
        if factories:
            taps = [tap for f in factories if (tap := f.open(exchange)) is not None]
            exchange.taps = taps or None

    # -- lifecycle ---------------------------------------------------------
    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        limits = self.table.config.limits
        connection_limits = ConnectionLimits(
            max_head_bytes=limits.max_header_bytes,
            max_line_bytes=limits.max_line_bytes,
            idle_timeout=limits.client_idle_timeout,
        )
        self._server = await open_listener(
            host,
            port,
            backlog=limits.listen_backlog,
            reuse_port=reuse_port,
            factory=lambda: ClientConnection(self.handle, connection_limits, self._connections),
        )
        return self._server.port

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
