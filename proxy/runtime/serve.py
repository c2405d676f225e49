"""`turnout serve`: run until SIGTERM/SIGINT, then drain and exit 0.

With one worker everything runs in this process. With N workers a supervisor
(this process, ``proxy.runtime.supervisor``) runs the admin listener and N
worker processes that share the proxy port through SO_REUSEPORT (see
``proxy.runtime.workers``). A start-up failure raises ``StartupError``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import structlog

from proxy.runtime.app import LoadedConfig, Turnout, warn_at_start, warn_if_slow_parser
from proxy.runtime.startup import StartupError

_log = structlog.get_logger("turnout")


def install_event_loop_policy() -> None:
    """uvloop, unless ``TURNOUT_LOOP=asyncio`` (the escape hatch to the standard loop).

    uvloop spends about a third less CPU per proxied request (bench/README.md);
    its one-accept-per-iteration burst tail is handled by ``proxy.http.listener``.
    """
    choice = os.environ.get("TURNOUT_LOOP", "uvloop")
    if choice == "asyncio":
        return
    if choice != "uvloop":
        raise StartupError(f"TURNOUT_LOOP={choice!r}: use 'uvloop' (the default) or 'asyncio'")
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def stop_signal() -> asyncio.Future[str]:
    """A future that gets the name of the first SIGTERM or SIGINT from now on.

    Taken before a slow start (workers), so that a stop asked for meanwhile is
    a clean stop once started, not the default action that kills the process
    and orphans its children. Cancelling it gives the signals back."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig.name)

    def restore(_: asyncio.Future[str]) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    received.add_done_callback(restore)
    return received


def on_reload_signal(reload: Callable[[], Awaitable[object]]) -> None:
    """Run ``reload`` on SIGHUP (one at a time: a reload in progress absorbs the next)."""
    loop = asyncio.get_running_loop()
    running: list[asyncio.Task[object]] = []

    def handler() -> None:
        if running and not running[0].done():
            return
        running[:] = [loop.create_task(reload())]  # type: ignore[arg-type]

    loop.add_signal_handler(signal.SIGHUP, handler)


async def serve_single(loaded: LoadedConfig, *, reuse_port: bool = False) -> int:
    """Run one proxy process with its admin listener until a stop signal."""
    warn_if_slow_parser()
    stopped = stop_signal()
    turnout = Turnout(loaded)
    try:
        await turnout.start(reuse_port=reuse_port, watch=True)
    except BaseException:
        stopped.cancel()
        raise
    on_reload_signal(turnout.reload)
    warn_at_start(loaded)
    turnout.log_startup(workers=1)
    name = await stopped
    _log.info("turnout_draining", signal=name, drain_timeout=loaded.config.drain_timeout)
    await turnout.stop()
    _log.info("turnout_stopped")
    return 0


def run_serve(loaded: LoadedConfig, workers: int) -> int:
    install_event_loop_policy()
    if workers <= 1:
        return asyncio.run(serve_single(loaded))
    from proxy.runtime.supervisor import supervise

    return asyncio.run(supervise(loaded, workers))
