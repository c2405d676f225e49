"""The config compiled once into the immutable objects the hot path reads.

A ``RoutingTable`` is built from a validated ``Config`` and never changed
afterwards (except each flag's ``threshold``, see ``FlagRule``). A reload builds
a new table and swaps one reference; requests in flight keep the table they
started with. Backend connection pools are kept across reloads when the
backend's address and timeouts did not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config.models import BackendConfig, Config
from proxy.decision.bucketing import threshold_for
from proxy.decision.decide import BACKEND_NAMES, FlagRule
from proxy.decision.identity import IdentityReader
from proxy.decision.routing import RouteMatcher, RouteRule
from proxy.http.upstream import ConnectionPool
from proxy.observe.stats import Series, Stats

UNMATCHED_ROUTE = "unmatched"
UNMATCHED_FLAG = "none"


@dataclass(frozen=True, slots=True)
class BackendTarget:
    """One backend as the forwarding layer needs it."""

    name: str
    pool: ConnectionPool
    connect_timeout: float
    response_timeout: float
    idle_timeout: float
    scheme: str


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    label: str
    flag: FlagRule | None
    series: tuple[Series, Series]  # indexed by backend (LEGACY, NEW)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    config: Config
    config_hash: str
    matcher: RouteMatcher
    routes: tuple[CompiledRoute, ...]
    unmatched: CompiledRoute
    flags: Mapping[str, FlagRule]
    identity: IdentityReader
    force_header: str | None
    backends: tuple[BackendTarget, BackendTarget]


class PoolRegistry:
    """Backend pools by identity, so that an unchanged backend keeps its connections."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, int, float], ConnectionPool] = {}

    def target(self, name: str, backend: BackendConfig) -> BackendTarget:
        timeouts = backend.timeouts
        key = (name, backend.host, backend.port, timeouts.connect)
        pool = self._pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                backend.host,
                backend.port,
                connect_timeout=timeouts.connect,
                max_idle=backend.max_idle_connections,
            )
            self._pools[key] = pool
        return BackendTarget(
            name=name,
            pool=pool,
            connect_timeout=timeouts.connect,
            response_timeout=timeouts.response,
            idle_timeout=timeouts.idle,
            scheme=backend.scheme,
        )

    def retire_unused(self, table: RoutingTable) -> None:
        """Close pools that the current table no longer uses (after a reload)."""
        in_use = {id(target.pool) for target in table.backends}
        for key, pool in list(self._pools.items()):
            if id(pool) not in in_use:
                pool.close()
                del self._pools[key]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def compile_table(
    config: Config,
    config_hash: str,
    stats: Stats,
    pools: PoolRegistry,
    overrides: Mapping[str, float] | None = None,
) -> RoutingTable:
    """Build the hot-path view of ``config``; ``overrides`` are runtime percents by flag."""
    flags = {name: FlagRule.from_config(name, flag) for name, flag in config.flags.items()}
    for name, percent in (overrides or {}).items():
        if name in flags:
            flags[name].threshold = threshold_for(percent)
    routes = tuple(
        CompiledRoute(
            label=route.label,
            flag=flags[route.flag],
            series=_series(stats, route.label, route.flag),
        )
        for route in config.routes
    )
    rules = [
        RouteRule(
            index=index,
            pattern=route.path,
            methods=frozenset(route.methods) if route.methods else None,
            header_name=route.header.name if route.header else None,
            header_value=route.header.value if route.header else None,
        )
        for index, route in enumerate(config.routes)
    ]
    return RoutingTable(
        config=config,
        config_hash=config_hash,
        matcher=RouteMatcher(rules),
        routes=routes,
        unmatched=CompiledRoute(
            UNMATCHED_ROUTE, None, _series(stats, UNMATCHED_ROUTE, UNMATCHED_FLAG)
        ),
        flags=flags,
        identity=IdentityReader.from_config(config.sticky, config.sticky_cookie),
        force_header=config.force_header,
        backends=(
            pools.target("legacy", config.backends.legacy),
            pools.target("new", config.backends.new),
        ),
    )


def _series(stats: Stats, route: str, flag: str) -> tuple[Series, Series]:
    legacy, new = BACKEND_NAMES
    return stats.series_for(route, flag, legacy), stats.series_for(route, flag, new)
