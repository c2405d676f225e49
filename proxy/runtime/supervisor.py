"""The supervisor of `turnout serve --workers N`: admin API, live control, the workers.

Start-up either completes (the proxy port is free, the admin listener is up,
every worker listens) or fails with one ``StartupError`` and nothing left
running. Then the supervisor serves until a stop signal, or until its workers
crash too often (exit code 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import structlog

from proxy.admin.api import start_admin
from proxy.config.loader import LoadedConfig
from proxy.config.state_store import parse_state_store
from proxy.control.controller import Controller
from proxy.control.state import StateStore
from proxy.control.watch import ConfigWatcher
from proxy.fleet.fleet import Fleet, replica_id
from proxy.http.pool import PoolRegistry
from proxy.observe.stats import Snapshot, Stats
from proxy.runtime.app import loop_name, warn_at_start, warn_if_slow_parser
from proxy.runtime.serve import on_reload_signal, stop_signal
from proxy.runtime.startup import StartupError, bind, probe
from proxy.runtime.surface import ControlSurface
from proxy.runtime.workers import WorkerSet

_log = structlog.get_logger("turnout.workers")


class SupervisorControl(ControlSurface):
    """The admin API's data source and live control when the proxy runs in workers.

    The supervisor keeps its own Controller (config, runtime state, state file);
    workers get runtime changes pushed over their sockets and reload on SIGHUP.
    With ``state_store`` the supervisor is the replica: it follows the shared state
    and pushes what it adopts to its workers (it does not judge: no canary here).
    """

    def __init__(self, loaded: LoadedConfig, workers: WorkerSet) -> None:
        config = loaded.config
        self.fleet = (
            Fleet(
                parse_state_store(config.state_store),
                replica_id(config.admin.listen.port),
                judge=False,
            )
            if config.state_store is not None
            else None
        )
        store = self.fleet.store if self.fleet is not None else StateStore(config.state_file)
        super().__init__(Controller(loaded, store, Stats(), PoolRegistry()))
        self.workers = workers

    async def push_state(self) -> None:
        await self.workers.push_state(self.controller.state)

    async def fleet_status(self) -> dict[str, Any] | None:
        return await self.fleet.status() if self.fleet is not None else None

    async def snapshot(self) -> Snapshot:
        await self.workers.snapshots()
        return {**self.workers.totals.total(), "worker_restarts": self.workers.restarts}

    def ready(self) -> bool:
        synced = self.fleet is None or self.fleet.synced
        return synced and self.workers.started and self.workers.alive()

    async def mutate(
        self, action: str, flag: str | None, who: str, percent: float | None = None
    ) -> dict[str, object]:
        result = await super().mutate(action, flag, who, percent)
        await self.workers.push_state(self.controller.state)
        return result

    async def reload(self) -> None:
        """Validate here first; only a valid config is reloaded by the workers."""
        if self.controller.reload():
            self.workers.signal_all(signal.SIGHUP)


async def supervise(loaded: LoadedConfig, count: int) -> int:
    """Run the workers until a stop signal (0) or a crash loop (1); raises
    ``StartupError`` when it cannot start."""
    warn_if_slow_parser()
    config = loaded.config
    if config.listen.port == 0:
        raise StartupError("--workers > 1 needs a fixed listen port (listen: HOST:PORT)")
    probe("listen", config.listen)
    StateStore(config.state_file).load()  # a corrupt file is set aside once, here
    canaries = sorted(name for name, flag in config.flags.items() if flag.canary is not None)
    if canaries:
        _log.warning(
            "canary_inactive_with_workers",
            flags=canaries,
            message="the canary runs only with one worker: these flags keep their percent "
            "and are not judged with --workers > 1",
        )
    workers = WorkerSet(loaded, count)
    control = SupervisorControl(loaded, workers)
    admin, admin_port = await bind(
        start_admin(control, config.admin.listen.host, config.admin.listen.port),
        "admin.listen",
        config.admin.listen,
    )
    stopped = stop_signal()
    try:
        await workers.start()
    except BaseException:
        stopped.cancel()
        await workers.stop(grace=5)
        await admin.cleanup()
        raise
    if control.fleet is not None:
        control.fleet.admin = f"{config.admin.listen.host}:{admin_port}"
        await control.fleet.start(control.controller, on_adopted=control.push_state)
    config_watcher = ConfigWatcher(loaded.path, control.reload)
    await config_watcher.start()
    on_reload_signal(control.reload)
    warn_at_start(loaded)
    _log.info(
        "turnout_started",
        config=loaded.path,
        workers=count,
        pid=os.getpid(),
        listen=str(config.listen),
        admin=f"{config.admin.listen.host}:{admin_port}",
        loop=loop_name(),
    )
    code = await _serve_until_stopped(stopped, workers, control, config.drain_timeout)
    await config_watcher.stop()
    if control.fleet is not None:
        await control.fleet.stop()
    await workers.stop(grace=config.drain_timeout + 5)
    await admin.cleanup()
    _log.info("turnout_stopped")
    return code


async def _serve_until_stopped(
    stopped: asyncio.Future[str],
    workers: WorkerSet,
    control: SupervisorControl,
    drain_timeout: float,
) -> int:
    """0 after a stop signal, 1 when the workers crash-loop (logged once)."""
    watch = asyncio.create_task(workers.watch(lambda: control.controller.state))
    await asyncio.wait((stopped, watch), return_when=asyncio.FIRST_COMPLETED)
    workers.stopping = True
    for waiting in (stopped, watch):
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    if not stopped.cancelled():
        _log.info("turnout_draining", signal=stopped.result(), drain_timeout=drain_timeout)
        return 0
    _log.error("workers_crash_looping", message=watch.result())
    return 1
