"""The config compiled once into the immutable objects the hot path reads.

A ``RoutingTable`` is built from a validated ``Config`` and never changed
afterwards (except each flag's ``threshold``, see ``FlagRule``). A reload builds
a new table and swaps one reference; requests in flight keep the table they
started with.

The table is pure: it carries the two backend targets the data plane handed to
``compile_table`` (connection pools, in practice) without knowing what they are,
so this package never imports any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from proxy.config.models import UNMATCHED_ROUTE, Config
from proxy.decision.bucketing import threshold_for
from proxy.decision.flag_rule import FlagRule
from proxy.decision.identity import IdentityReader
from proxy.decision.routing import RouteMatcher, RouteRule
from proxy.decision.sides import BACKEND_NAMES
from proxy.observe.stats import Series, Stats

UNMATCHED_FLAG = "none"

Target = TypeVar("Target")


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    label: str
    flag: FlagRule | None
    series: tuple[Series, Series]  # indexed by backend (LEGACY, NEW)


@dataclass(frozen=True, slots=True)
class RoutingTable(Generic[Target]):
    config: Config
    config_hash: str
    matcher: RouteMatcher
    routes: tuple[CompiledRoute, ...]
    unmatched: CompiledRoute
    flags: Mapping[str, FlagRule]
    identity: IdentityReader
    force_header: str | None
    backends: tuple[Target, Target]  # indexed by backend (LEGACY, NEW)


def compile_table(
    config: Config,
    config_hash: str,
    stats: Stats,
    backends: tuple[Target, Target],
    overrides: Mapping[str, float] | None = None,
) -> RoutingTable[Target]:
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
        backends=backends,
    )


def _series(stats: Stats, route: str, flag: str) -> tuple[Series, Series]:
    legacy, new = BACKEND_NAMES
    return stats.series_for(route, flag, legacy), stats.series_for(route, flag, new)
