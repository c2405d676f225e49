"""Several worker processes behind one port (`turnout serve --workers N`).

Each worker binds the proxy port with SO_REUSEPORT (the kernel spreads
connections across them) and serves its counters on a private Unix socket.
The supervisor (``proxy.runtime.supervisor``) runs the admin listener and
merges the workers' snapshots at request time, so totals are the whole
server's; ``WorkerTotals`` keeps those totals from ever going backwards.

A worker that exits is restarted, unless workers exit too often
(``CRASH_LIMIT`` exits within ``CRASH_WINDOW_SECONDS``): then the supervisor
gives up rather than restart forever.
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
from collections import deque
from collections.abc import Callable

import aiohttp
import orjson
import structlog
from aiohttp import web

from proxy.config.loader import LoadedConfig
from proxy.control.state import RuntimeState, decode_state, encode_state
from proxy.observe.stats import Snapshot, Stats, merge_snapshots
from proxy.runtime.app import Turnout
from proxy.runtime.serve import on_reload_signal, stop_signal
from proxy.runtime.startup import ListenError, StartupError

_log = structlog.get_logger("turnout.workers")
SNAPSHOT_TIMEOUT = 2.0
WORKER_START_SECONDS = 15.0
CRASH_LIMIT = 5
CRASH_WINDOW_SECONDS = 30.0
EXIT_CANNOT_LISTEN = 3
"""A worker's exit code when it cannot bind the proxy port (the supervisor gives up)."""
_POLL_SECONDS = 0.5


async def run_worker(loaded: LoadedConfig, socket_path: str) -> int:
    """A worker: the proxy on the shared port plus a snapshot endpoint on ``socket_path``."""
    supervisor = os.getppid()
    turnout = Turnout(loaded, shared=False)  # the supervisor follows the fleet's state
    try:
        await turnout.start(reuse_port=True, admin=False)
    except ListenError:
        return EXIT_CANNOT_LISTEN  # the supervisor says so, once for all workers

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
    await _until_stopped_or_orphaned(supervisor)
    await runner.cleanup()
    await turnout.stop()
    return 0


async def _until_stopped_or_orphaned(supervisor: int) -> None:
    """Until SIGTERM or SIGINT, or until the supervisor is gone: a worker nobody
    supervises would hold the port with nobody to stop it."""
    stopped = stop_signal()
    while not stopped.done():
        if os.getppid() != supervisor:
            _log.error("supervisor_gone", message="the supervisor exited: this worker stops")
            stopped.cancel()
            return
        await asyncio.wait({stopped}, timeout=_POLL_SECONDS)


class WorkerTotals:
    """The workers' counters as one total that never goes backwards.

    A worker that misses a scrape (stopped, overloaded) counts with its last
    snapshot. A worker that exits leaves its last snapshot in a retired base
    that stays in the total, and its replacement counts from zero on top. What
    a dead worker counted after its last scrape is lost (at most one scrape
    interval of it), but a Prometheus counter never sees a reset.
    """

    def __init__(self, count: int) -> None:
        self.last: list[Snapshot | None] = [None] * count
        self.generation = [0] * count
        self.retired: Snapshot | None = None

    def update(self, index: int, generation: int, snapshot: Snapshot) -> None:
        """A fresh snapshot of worker ``index``, unless it came from a retired process."""
        if generation == self.generation[index]:
            self.last[index] = snapshot

    def retire(self, index: int) -> None:
        """Worker ``index`` exited: its last counts move into the retired base."""
        self.generation[index] += 1
        last, self.last[index] = self.last[index], None
        if last is not None:
            base = {**last, "backend_up": {}}  # a dead worker's view of health is no view
            self.retired = base if self.retired is None else merge_snapshots([self.retired, base])

    def total(self) -> Snapshot:
        parts = [part for part in (self.retired, *self.last) if part is not None]
        return merge_snapshots(parts) if parts else Stats().snapshot()


class CrashWindow:
    """Whether workers exit too often to be worth restarting (pure)."""

    def __init__(self, limit: int = CRASH_LIMIT, seconds: float = CRASH_WINDOW_SECONDS) -> None:
        self.limit, self.seconds = limit, seconds
        self._exits: deque[float] = deque(maxlen=limit)

    def exited(self, now: float) -> bool:
        """Record one exit; True when ``limit`` exits fell within ``seconds``."""
        self._exits.append(now)
        return len(self._exits) == self.limit and now - self._exits[0] <= self.seconds

    def __str__(self) -> str:
        return f"{self.limit} worker exits within {self.seconds:g} s"


class WorkerSet:
    """The supervisor's worker processes: start, restart, scrape, push state, stop."""

    def __init__(
        self, loaded: LoadedConfig, count: int, *, snapshot_timeout: float = SNAPSHOT_TIMEOUT
    ) -> None:
        self.loaded = loaded
        self.directory = tempfile.mkdtemp(prefix="turnout-workers-")
        self.sockets = [os.path.join(self.directory, f"worker-{i}.sock") for i in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.totals = WorkerTotals(count)
        self.crashes = CrashWindow()
        self.restarts = 0
        """Workers started again after an exit (``turnout_worker_restarts_total``)."""
        self.started = False
        """Set once ``start`` saw every worker listen (from then on exits mean restarts)."""
        self.stopping = False
        self._timeout = aiohttp.ClientTimeout(total=snapshot_timeout)

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        socket_path = self.sockets[index]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        command = [sys.executable, "-m", "proxy", "serve", "-c", self.loaded.path]
        command += ["--worker-socket", socket_path, "--worker-id", str(index)]
        return subprocess.Popen(command)

    async def start(self) -> None:
        """Start every worker and wait until each listens; raises ``StartupError``."""
        self.processes = [self._spawn(i) for i in range(len(self.sockets))]
        deadline = time.monotonic() + WORKER_START_SECONDS
        while not self.alive():
            for index, process in enumerate(self.processes):
                if process.poll() is not None:
                    raise StartupError(self._start_failure(index, process.returncode))
            if time.monotonic() > deadline:
                raise StartupError(f"the workers did not start within {WORKER_START_SECONDS:g} s")
            await asyncio.sleep(0.05)
        self.started = True

    def _start_failure(self, index: int, code: int) -> str:
        if code == EXIT_CANNOT_LISTEN:
            return f"cannot listen on {self.loaded.config.listen} (listen): worker {index} failed"
        return f"worker {index} exited with code {code} during start-up"

    def _listening(self, index: int) -> bool:
        return os.path.exists(self.sockets[index])  # the worker creates it when it listens

    def alive(self) -> bool:
        return bool(self.processes) and all(
            process.poll() is None and os.path.exists(path)
            for process, path in zip(self.processes, self.sockets, strict=True)
        )

    async def watch(self, current_state: Callable[[], RuntimeState]) -> str:
        """Restart workers that exit and hand each new one the current runtime state
        (without a state file it could not read it). Returns why it gave up."""
        waiting: set[int] = set()  # restarted, not listening yet
        while not self.stopping:
            await asyncio.sleep(_POLL_SECONDS)
            for index, process in enumerate(self.processes):
                if process.poll() is None or self.stopping:
                    continue
                _log.error("worker_exited", worker=index, code=process.returncode)
                self.totals.retire(index)
                if self.crashes.exited(time.monotonic()):
                    return f"{self.crashes}: giving up"
                self.processes[index] = self._spawn(index)
                self.restarts += 1
                waiting.add(index)
            ready = {index for index in waiting if self._listening(index)}
            if ready:
                waiting -= ready
                await self.push_state(current_state(), [self.sockets[i] for i in sorted(ready)])
        return "stopping"

    async def snapshots(self) -> list[Snapshot | None]:
        """Each worker's counters now (None for one that did not answer in time); the
        answers also go into ``totals``."""
        generations = list(self.totals.generation)
        results = await asyncio.gather(*(self._fetch(path) for path in self.sockets))
        for index, snapshot in enumerate(results):
            if snapshot is not None:
                self.totals.update(index, generations[index], snapshot)
        return results

    async def _fetch(self, path: str) -> Snapshot | None:
        connector = aiohttp.UnixConnector(path=path)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=self._timeout) as session,
                session.get("http://worker/snapshot") as response,
            ):
                result: Snapshot = orjson.loads(await response.read())
                return result
        except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError):
            return None

    async def push_state(self, state: RuntimeState, sockets: list[str] | None = None) -> None:
        """Hand a runtime change to the workers (they apply it at once)."""
        body = encode_state(state)

        async def push(path: str) -> None:
            connector = aiohttp.UnixConnector(path=path)
            try:
                async with (
                    aiohttp.ClientSession(connector=connector, timeout=self._timeout) as session,
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
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.to_thread(process.wait, remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        shutil.rmtree(self.directory, ignore_errors=True)


def worker_main(loaded: LoadedConfig, socket_path: str, worker_id: int | None) -> int:
    """A worker process: every log line it writes carries ``worker=<id>``."""
    from proxy.runtime.serve import install_event_loop_policy

    if worker_id is not None:
        structlog.contextvars.bind_contextvars(worker=worker_id)
    install_event_loop_policy()
    return asyncio.run(run_worker(loaded, socket_path))
