"""One Turnout process: the proxy listener plus (optionally) its admin listener.

``Turnout`` is what `turnout serve` runs with one worker, what each worker runs
with several, and what the tests start in-process on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp.http_parser
import structlog
from aiohttp import web

from proxy.admin.api import no_token_message, start_admin
from proxy.canary.runner import CanaryRunner, ShadowParity
from proxy.config.loader import ConfigError, LoadedConfig, read_config
from proxy.config.models import Config
from proxy.config.state_store import parse_state_store
from proxy.control.controller import Controller
from proxy.control.state import StateStore
from proxy.control.watch import ConfigWatcher
from proxy.exchange.service import ProxyService
from proxy.fleet.fleet import Fleet, replica_id
from proxy.http.pool import PoolRegistry
from proxy.observe.stats import Snapshot, Stats
from proxy.resilience.checker import HealthChecker
from proxy.resilience.health import HealthRegistry
from proxy.runtime.startup import ListenError, bind
from proxy.runtime.surface import ControlSurface
from proxy.shadow.service import ShadowService

_log = structlog.get_logger("turnout")


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


def fleet_canary_warning(config: Config) -> str | None:
    """With a shared state store but no ``canary.prometheus_url``, the judge (one replica)
    sees only the traffic that replica served: say so (`turnout serve` and `check`)."""
    if config.state_store is None:
        return None
    flags = sorted(
        name
        for name, flag in config.flags.items()
        if flag.canary is not None and flag.canary.prometheus_url is None
    )
    if not flags:
        return None
    return (
        f"state_store is set but the canary of {', '.join(flags)} has no prometheus_url: "
        "the replica that holds the judge's lease judges only its own share of the traffic"
    )


def warn_at_start(loaded: LoadedConfig) -> None:
    """Say once, at start-up, what the config asks for that will not happen."""
    admin = loaded.config.admin
    fleet_warning = fleet_canary_warning(loaded.config)
    if fleet_warning is not None:
        _log.warning("canary_judges_one_replica", message=fleet_warning)
    if not (admin.token_env and os.environ.get(admin.token_env, "").strip()):
        _log.warning("admin_token_missing", message=no_token_message(admin.token_env))
    for warning in loaded.warnings:
        _log.warning(
            "config_key_not_active", key=warning.path, line=warning.line, message=warning.message
        )


class Turnout(ControlSurface):
    """The proxy service of one process, its counters, health, live control and admin API."""

    def __init__(self, loaded: LoadedConfig, *, shared: bool = True) -> None:
        """``shared=False``: a worker, which gets its state from the supervisor and
        does not join the fleet itself."""
        self.stats = Stats()
        self.pools = PoolRegistry()
        config = loaded.config
        self.fleet = (
            Fleet(parse_state_store(config.state_store), replica_id(config.admin.listen.port))
            if config.state_store is not None and shared
            else None
        )
        store = self.fleet.store if self.fleet is not None else StateStore(config.state_file)
        super().__init__(Controller(loaded, store, self.stats, self.pools))
        backends = loaded.config.backends
        self.health = HealthRegistry(
            backends.legacy.outlier_detection, backends.new.outlier_detection
        )
        self.checkers: list[HealthChecker] = []
        self.service = ProxyService(self.controller.table, self.stats, self.pools, self.health)
        self.controller.attach(self.service)
        self.shadow = ShadowService(self.service, self.stats, loaded.config.discrepancy_log)
        self.proxy_port = 0
        self.admin_port = 0
        self._admin: web.AppRunner | None = None
        self._watcher: ConfigWatcher | None = None

    @property
    def loaded(self) -> LoadedConfig:
        return self.controller.loaded

    # -- read and changed by the admin API (the rest is in ControlSurface) ------
    async def snapshot(self) -> Snapshot:
        self.stats.backend_up = self.health.up()
        return {**self.stats.snapshot(), **self.shadow.snapshot_rows()}

    def ready(self) -> bool:
        """Listening, a backend up and, in a fleet, the shared state read once."""
        synced = self.fleet is None or self.fleet.synced
        return self.proxy_port != 0 and synced and any(self.health.up().values())

    async def fleet_status(self) -> dict[str, Any] | None:
        return await self.fleet.status() if self.fleet is not None else None

    async def reload(self) -> bool:
        """Re-read the config file (SIGHUP, file change); health checks and canaries follow."""
        reloaded = self.controller.reload()
        if reloaded:
            await self._restart_checkers()
            if self.canary is not None:
                await self.canary.sync()
        return reloaded

    async def _reload_quietly(self) -> None:
        await self.reload()

    # -- lifecycle ----------------------------------------------------------
    async def start(
        self, *, reuse_port: bool = False, admin: bool = True, watch: bool = False
    ) -> None:
        """Listen, check health, watch the file. A listen address that cannot be bound
        raises ``ListenError`` after what was started is stopped again."""
        config = self.loaded.config
        fleet = self.fleet if admin else None
        if fleet is not None:  # the shared state before the first request
            await fleet.start(self.controller)
        if admin:  # the process with the admin API owns the state: it runs the canary
            self.canary = CanaryRunner(
                self.controller,
                self.service,
                self.stats,
                ShadowParity(self.stats, self.shadow.new_errors),
                leader=fleet.leading if fleet is not None else lambda: True,
            )
            await self.canary.start()  # before listening: the first request sees its step
        try:
            self.proxy_port = await bind(
                self.service.start(config.listen.host, config.listen.port, reuse_port=reuse_port),
                "listen",
                config.listen,
            )
            if admin:
                self._admin, self.admin_port = await bind(
                    start_admin(self, config.admin.listen.host, config.admin.listen.port),
                    "admin.listen",
                    config.admin.listen,
                )
                if fleet is not None:
                    fleet.admin = f"{config.admin.listen.host}:{self.admin_port}"
        except ListenError:
            await self.stop()
            raise
        await self._restart_checkers()
        if watch:
            self._watcher = ConfigWatcher(self.loaded.path, self._reload_quietly)
            await self._watcher.start()

    async def stop(self) -> None:
        """Stop watching and the admin listener, then drain the proxy (drain_timeout)."""
        if self._watcher is not None:
            await self._watcher.stop()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        for checker in self.checkers:
            await checker.stop()
        if self.canary is not None:
            await self.canary.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        await self.service.stop()
        await self.shadow.stop()  # shadows still running after the drain

    async def _restart_checkers(self) -> None:
        for checker in self.checkers:
            await checker.stop()
        backends = self.loaded.config.backends
        self.checkers = [
            HealthChecker(health, backend, backend.health)
            for health, backend in zip(
                self.health.backends, (backends.legacy, backends.new), strict=True
            )
            if backend.health is not None
        ]
        for checker in self.checkers:
            checker.start()

    def log_startup(self, workers: int) -> None:
        """The one start-up line: what runs, where, and on which event loop."""
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
            overrides=self.controller.state.percents(),
            routes=len(config.routes),
            c_parser=c_parser_in_use(),
            loop=loop_name(),
        )


__all__ = ["ConfigError", "LoadedConfig", "Turnout", "read_config"]


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the event loop this process runs on (``TURNOUT_LOOP``)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
