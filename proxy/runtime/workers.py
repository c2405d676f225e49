"""Several worker processes behind one port (`turnout serve --workers N`).

Each worker binds the proxy port with SO_REUSEPORT (the kernel spreads
connections across them) and serves its counters on a private Unix socket.
The supervisor runs the admin listener; `/metrics` and `/status` merge the
workers' snapshots at request time, so totals are the whole server's.
A worker that dies is restarted; its counters restart from zero, which
Prometheus's rate() treats as a counter reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import aiohttp
import orjson
import structlog
from aiohttp import web

from proxy.admin.api import start_admin
from proxy.config.loader import LoadedConfig
from proxy.control.controller import Controller
from proxy.control.state import RuntimeState, StateStore, decode_state, encode_state
from proxy.control.watch import ConfigWatcher
from proxy.http.pool import PoolRegistry
from proxy.observe.stats import Snapshot, Stats, merge_snapshots
from proxy.runtime.app import Turnout, warn_if_slow_parser
from proxy.runtime.serve import on_reload_signal, wait_for_stop_signal
from proxy.runtime.surface import ControlSurface

_log = structlog.get_logger("turnout.workers")
_SNAPSHOT_TIMEOUT = 2.0
_WORKER_START_SECONDS = 15.0


async def run_worker(loaded: LoadedConfig, socket_path: str) -> int:
    """A worker: the proxy on the shared port plus a snapshot endpoint on ``socket_path``."""
    turnout = Turnout(loaded)
    await turnout.start(reuse_port=True, admin=False)

    async def snapshot(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(await turnout.snapshot()))

    async def apply_state(request: web.Request) -> web.Response:
        turnout.controller.apply_state(decode_state(await request.read()))
        return web.Response(text="ok")

    on_reload_signal(turnout.reload)
    app = web.Application()
    app.router.add_get("/snapshot", snapshot)
    app.router.add_post("/state", apply_state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, socket_path).start()
    await wait_for_stop_signal()
    await runner.cleanup()
    await turnout.stop()
    return 0


class WorkerSet:
    """The supervisor's view of its worker processes."""

    def __init__(self, loaded: LoadedConfig, count: int) -> None:
        self.loaded = loaded
        self.directory = tempfile.mkdtemp(prefix="turnout-workers-")
        self.sockets = [os.path.join(self.directory, f"worker-{i}.sock") for i in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = [self._spawn(i) for i in range(count)]
        self.stopping = False

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        socket_path = self.sockets[index]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        command = [
            sys.executable,
            "-m",
            "proxy",
            "serve",
            "-c",
            self.loaded.path,
            "--worker-socket",
            socket_path,
        ]
        return subprocess.Popen(command)

    def alive(self) -> bool:
        return all(
            process.poll() is None and os.path.exists(path)
            for process, path in zip(self.processes, self.sockets, strict=True)
        )

    async def watch(self, current_state: Callable[[], RuntimeState]) -> None:
        """Restart workers that exit while we are not stopping, and hand each restarted
        one the current runtime state (without a state file it could not read it)."""
        while not self.stopping:
            await asyncio.sleep(0.5)
            for index, process in enumerate(self.processes):
                if process.poll() is not None and not self.stopping:
                    _log.error("worker_exited", index=index, code=process.returncode)
                    self.processes[index] = self._spawn(index)
                    await self._when_listening(index)
                    await self.push_state(current_state(), [self.sockets[index]])

    async def _when_listening(self, index: int) -> None:
        """Poll for the worker's socket file: another process creates it."""
        for _ in range(int(_WORKER_START_SECONDS / 0.05)):
            if self._socket_ready(index):
                return
            await asyncio.sleep(0.05)

    def _socket_ready(self, index: int) -> bool:
        return os.path.exists(self.sockets[index])

    async def snapshots(self) -> list[Snapshot]:
        async def fetch(path: str) -> Snapshot | None:
            connector = aiohttp.UnixConnector(path=path)
            timeout = aiohttp.ClientTimeout(total=_SNAPSHOT_TIMEOUT)
            try:
                async with (
                    aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                    session.get("http://worker/snapshot") as response,
                ):
                    result: Snapshot = orjson.loads(await response.read())
                    return result
            except (aiohttp.ClientError, OSError, TimeoutError):
                return None

        results = await asyncio.gather(*(fetch(path) for path in self.sockets))
        return [snapshot for snapshot in results if snapshot is not None]

    async def push_state(self, state: RuntimeState, sockets: list[str] | None = None) -> None:
        """Hand a runtime change to the workers (they apply it at once)."""
        body = encode_state(state)

        async def push(path: str) -> None:
            connector = aiohttp.UnixConnector(path=path)
            timeout = aiohttp.ClientTimeout(total=_SNAPSHOT_TIMEOUT)
            try:
                async with (
                    aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                    session.post("http://worker/state", data=body) as response,
                ):
                    response.raise_for_status()
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                _log.error("worker_state_push_failed", socket=path, error=str(error))

        await asyncio.gather(*(push(path) for path in sockets or self.sockets))

    def signal_all(self, sig: signal.Signals) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(sig)

    async def stop(self, grace: float) -> None:
        self.stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.to_thread(process.wait, remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        shutil.rmtree(self.directory, ignore_errors=True)


class SupervisorControl(ControlSurface):
    """The admin API's data source and live control when the proxy runs in workers.

    The supervisor keeps its own Controller (config, runtime state, state file);
    workers get runtime changes pushed over their sockets and reload on SIGHUP.
    """

    def __init__(self, loaded: LoadedConfig, workers: WorkerSet) -> None:
        super().__init__(
            Controller(loaded, StateStore(loaded.config.state_file), Stats(), PoolRegistry())
        )
        self.workers = workers

    async def snapshot(self) -> Snapshot:
        snapshots = await self.workers.snapshots()
        if not snapshots:
            return Stats().snapshot()
        return merge_snapshots(snapshots)

    def ready(self) -> bool:
        return self.workers.alive()

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
    warn_if_slow_parser()
    config = loaded.config
    if config.listen.port == 0:
        _log.error("workers_need_fixed_port", message="--workers > 1 needs a fixed listen port")
        return 1
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
    admin, admin_port = await start_admin(
        control, config.admin.listen.host, config.admin.listen.port
    )
    watcher = asyncio.create_task(workers.watch(lambda: control.controller.state))
    config_watcher = ConfigWatcher(loaded.path, control.reload)
    await config_watcher.start()
    on_reload_signal(control.reload)
    _log.info(
        "turnout_started",
        config=loaded.path,
        workers=count,
        pid=os.getpid(),
        listen=str(config.listen),
        admin=f"{config.admin.listen.host}:{admin_port}",
    )
    name = await wait_for_stop_signal()
    _log.info("turnout_draining", signal=name, drain_timeout=config.drain_timeout)
    workers.stopping = True
    watcher.cancel()
    await config_watcher.stop()
    await workers.stop(grace=config.drain_timeout + 5)
    await admin.cleanup()
    _log.info("turnout_stopped")
    return 0


def worker_main(loaded: LoadedConfig, socket_path: str) -> int:
    from proxy.runtime.serve import install_event_loop_policy

    install_event_loop_policy()
    return asyncio.run(run_worker(loaded, socket_path))
