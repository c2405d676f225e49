"""One Turnout process: the proxy listener plus (optionally) its admin listener.

``Turnout`` is what `turnout serve` runs with one worker, what each worker runs
with several, and what the tests start in-process on ephemeral ports.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import aiohttp.http_parser
import structlog
from aiohttp import web

from proxy.admin import start_admin
from proxy.config import Config
from proxy.config_loader import ConfigError, config_hash, load_config, parse_config
from proxy.health import HealthChecker, HealthRegistry
from proxy.metrics import ControlState
from proxy.server import ProxyService
from proxy.stats import Snapshot, Stats
from proxy.table import PoolRegistry, RoutingTable, compile_table

_log = structlog.get_logger("turnout")


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    hash: str
    path: str


def read_config(path: str) -> LoadedConfig:
    """Load and validate a config file; raises ``ConfigError`` with every problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        load_config(path)  # raises the loader's own, well-worded ConfigError
        raise
    return LoadedConfig(parse_config(text, path), config_hash(text), path)


def c_parser_in_use() -> bool:
    """True when aiohttp parses HTTP with its C (llhttp) extension."""
    return aiohttp.http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser"


def warn_if_slow_parser() -> None:
    if not c_parser_in_use():
        _log.error(
            "aiohttp_c_parser_missing",
            message="aiohttp's C HTTP parser is not in use (AIOHTTP_NO_EXTENSIONS set, or no "
            "compiled wheel for this platform): the admin API runs on the pure-Python "
            "parser, slower and exposed to advisories that only affect it",
        )


class Turnout:
    """The proxy service of one process, its counters, and its admin listener."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.stats = Stats()
        self.pools = PoolRegistry()
        table = compile_table(loaded.config, loaded.hash, self.stats, self.pools)
        backends = loaded.config.backends
        self.health = HealthRegistry(
            backends.legacy.outlier_detection, backends.new.outlier_detection
        )
        self.checkers = [
            HealthChecker(health, backend, backend.health)
            for health, backend in zip(
                self.health.backends, (backends.legacy, backends.new), strict=True
            )
            if backend.health is not None
        ]
        self.service = ProxyService(table, self.stats, self.pools, self.health)
        self.reloads = {"success": 1, "failure": 0}
        self.last_reload_success = time.time()
        self.proxy_port = 0
        self.admin_port = 0
        self._admin: web.AppRunner | None = None

    # -- Control (read by the admin API) -----------------------------------
    @property
    def table(self) -> RoutingTable:
        return self.service.table

    async def snapshot(self) -> Snapshot:
        self.stats.backend_up = self.health.up()
        return self.stats.snapshot()

    def control_state(self) -> ControlState:
        return ControlState(
            flag_percent={name: rule.percent for name, rule in self.table.flags.items()},
            reloads=dict(self.reloads),
            last_reload_success=self.last_reload_success,
        )

    def ready(self) -> bool:
        return self.proxy_port != 0 and any(self.health.up().values())

    # -- lifecycle ----------------------------------------------------------
    async def start(self, *, reuse_port: bool = False, admin: bool = True) -> None:
        config = self.loaded.config
        for checker in self.checkers:
            checker.start()
        self.proxy_port = await self.service.start(
            config.listen.host, config.listen.port, reuse_port=reuse_port
        )
        if admin:
            self._admin, self.admin_port = await start_admin(
                self, config.admin.listen.host, config.admin.listen.port
            )

    async def stop(self) -> None:
        """Stop the admin listener, then drain the proxy (bounded by drain_timeout)."""
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        for checker in self.checkers:
            await checker.stop()
        await self.service.stop()

    def log_startup(self, workers: int) -> None:
        config = self.loaded.config
        _log.info(
            "turnout_started",
            config=self.loaded.path,
            config_hash=self.loaded.hash[:12],
            listen=f"{config.listen.host}:{self.proxy_port}",
            admin=f"{config.admin.listen.host}:{self.admin_port}" if self.admin_port else None,
            workers=workers,
            pid=os.getpid(),
            legacy=config.backends.legacy.url,
            new=config.backends.new.url,
            flags={name: rule.percent for name, rule in self.table.flags.items()},
            routes=len(config.routes),
            c_parser=c_parser_in_use(),
        )


__all__ = ["ConfigError", "LoadedConfig", "Turnout", "read_config"]
