"""``turnout demo``: sample backends + the proxy (a subprocess) + traffic + live summary.

The proxy runs as ``python -m proxy serve`` in its own process group, so that
Ctrl-C reaches only the demo, which then shuts things down in order: traffic
first, then the proxy (SIGTERM, so it drains), then the backends. The proxy's
output goes to temporary files, never to a pipe nobody reads, and is shown
when the proxy fails to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import aiohttp
import structlog
import yaml
from aiohttp import web

from proxy.demo.backends import SIDES, Side, start_backend
from proxy.demo.summary import (
    ExtraColumns,
    format_final_summary,
    format_live_line,
    summarize,
)
from proxy.demo.traffic import TrafficConfig, TrafficGenerator

log = structlog.get_logger()

READY_TIMEOUT = 15.0
READY_POLL = 0.1
STOP_TIMEOUT = 10.0
EXIT_INTERRUPTED = 130
MIN_TAIL_WINDOW = 0.5  # a shorter last window would print a meaningless rate


@dataclass(frozen=True, slots=True)
class Topology:
    """The addresses the demo needs from its config file."""

    proxy_url: str
    admin_url: str
    backends: dict[Side, tuple[str, int]]  # side -> (host, port) to listen on


def _split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # wildcard binds are reached through loopback
        host = "127.0.0.1"
    return host, int(port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def parse_topology(config: Any) -> Topology:
    """Extract listen addresses from a parsed config (validation is ``turnout check``'s job)."""
    try:
        proxy_url = _url(*_split_listen(str(config["listen"])))
        admin_url = _url(*_split_listen(str(config["admin"]["listen"])))
        backends: dict[Side, tuple[str, int]] = {}
        for side in SIDES:
            url = urlsplit(str(config["backends"][side]["url"]))
            backends[side] = (url.hostname or "127.0.0.1", url.port or 80)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"demo config lacks a usable address: {exc!r}") from exc
    return Topology(proxy_url, admin_url, backends)


def load_topology(path: Path) -> Topology:
    with path.open(encoding="utf-8") as fh:
        return parse_topology(yaml.safe_load(fh))


@contextlib.contextmanager
def _config_file(config_path: str | None) -> Iterator[Path]:
    """The given config, or the packaged ``demo.yaml`` as a real file (even from a zip)."""
    if config_path is not None:
        yield Path(config_path).resolve()
        return
    with resources.as_file(resources.files("proxy.demo").joinpath("demo.yaml")) as path:
        yield path


def _proxy_env() -> dict[str, str]:
    """Make ``python -m proxy`` importable when running from a source checkout."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    return env


async def _spawn_proxy(config: Path, out: IO[bytes], err: IO[bytes]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "-c", str(config),
        stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
        env=_proxy_env(), process_group=0,
    )  # fmt: skip


async def _ready_once(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _wait_ready(
    proc: asyncio.subprocess.Process, url: str, stop: asyncio.Event, within: float
) -> str | None:
    """Poll ``url`` until it answers 200. Returns None when ready, else why not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    exited = asyncio.ensure_future(proc.wait())
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
            while not await _ready_once(session, url):
                if stop.is_set():
                    return "interrupted"  # the caller checks stop itself
                if loop.time() >= deadline:
                    return f"proxy not ready after {within:g}s ({url})"
                # Sleeping on the process doubles as early-exit detection.
                await asyncio.wait({exited}, timeout=READY_POLL)
                if exited.done():
                    return f"proxy exited early with code {proc.returncode}"
    finally:
        exited.cancel()
    return None


async def _stop_proxy(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("demo.proxy_kill", pid=proc.pid, after_seconds=STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    log.info("demo.proxy_stopped", pid=proc.pid, code=proc.returncode)


def _report_proxy_failure(reason: str, out: IO[bytes], err: IO[bytes]) -> None:
    """Show why the proxy did not come up: its stderr, else the tail of its stdout."""
    err.seek(0)
    text = err.read().decode(errors="replace")
    if not text.strip():
        out.seek(0)
        text = "".join(out.read().decode(errors="replace").splitlines(keepends=True)[-40:])
    sys.stderr.write(f"turnout demo: {reason}\n{text}")
    if text and not text.endswith("\n"):
        sys.stderr.write("\n")


def _install_signal_handlers(stop: asyncio.Event) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # e.g. Windows
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    return installed


async def _proxy_extras(session: aiohttp.ClientSession, admin_url: str) -> ExtraColumns:
    """Shadow parity (all shadowed flags together) and the canaries' progress, from the
    proxy's ``/status``."""
    try:
        async with session.get(admin_url + "/status") as response:
            document = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return ExtraColumns()
    compared = matched = 0
    canaries = []
    for flag in document.get("flags", []):
        shadow = flag.get("shadow") or {}
        matched += shadow.get("match", 0)
        compared += shadow.get("match", 0) + shadow.get("mismatch", 0)
        canary = flag.get("canary")
        if canary:
            canaries.append(f"{flag['name']} {flag['percent']:g}% {canary.get('state')}")
    return ExtraColumns(
        shadow_parity=matched / compared if compared else None,
        canary_step=", ".join(canaries) or None,
    )


async def _live(
    generator: TrafficGenerator, traffic: asyncio.Task[Any], admin_url: str
) -> ExtraColumns:
    """Print one line per second of traffic until the generator finishes; returns the
    last numbers read from the proxy."""
    loop = asyncio.get_running_loop()
    started = last = loop.time()
    cursor, second = 0, 0
    extras = ExtraColumns()
    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not traffic.done():
            second += 1
            await asyncio.wait({traffic}, timeout=max(0.0, started + second - loop.time()))
            now = loop.time()
            window = generator.samples[cursor:]
            cursor += len(window)
            extras = await _proxy_extras(session, admin_url)
            if not traffic.done() or now - last >= MIN_TAIL_WINDOW:
                line = format_live_line(second, summarize(window, now - last, extras))
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            last = now
    return extras


async def _drive(topology: Topology, duration: float | None, stop: asyncio.Event) -> None:
    generator = TrafficGenerator(TrafficConfig(topology.proxy_url, duration=duration), stop)
    loop = asyncio.get_running_loop()
    started = loop.time()
    traffic = asyncio.create_task(generator.run())
    extras = ExtraColumns()
    try:
        extras = await _live(generator, traffic, topology.admin_url)
    finally:
        stop.set()
        await traffic
    final = summarize(generator.samples, loop.time() - started, extras)
    sys.stdout.write("\n" + format_final_summary(final))
    sys.stdout.flush()


def metrics_line(topology: Topology) -> str:
    """Where the demo's Prometheus metrics are: scrape them to watch it on the dashboard."""
    return (
        f"Prometheus metrics: {topology.admin_url}/metrics "
        "(dashboard and alert rules: dashboards/, see docs/operations.md)\n"
    )


async def _start_backends(topology: Topology) -> list[web.AppRunner]:
    runners: list[web.AppRunner] = []
    try:
        for side in SIDES:
            host, port = topology.backends[side]
            runners.append(await start_backend(side, host, port))
            log.info("demo.backend_started", side=side, host=host, port=port)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        raise
    return runners


def _remove_signal_handlers(installed: list[signal.Signals]) -> None:
    loop = asyncio.get_running_loop()
    for sig in installed:
        loop.remove_signal_handler(sig)


async def _with_proxy(
    config: Path, topology: Topology, duration: float | None, stop: asyncio.Event
) -> int:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = await _spawn_proxy(config, out, err)
        try:
            failure = await _wait_ready(proc, topology.admin_url + "/readyz", stop, READY_TIMEOUT)
            if failure is not None:
                if stop.is_set():
                    return EXIT_INTERRUPTED
                _report_proxy_failure(failure, out, err)
                return 1
            log.info("demo.proxy_ready", pid=proc.pid, url=topology.proxy_url)
            sys.stdout.write(metrics_line(topology))
            await _drive(topology, duration, stop)
            return 0
        finally:
            await _stop_proxy(proc)


async def _run(config: Path, duration: float | None) -> int:
    topology = load_topology(config)
    stop = asyncio.Event()
    installed = _install_signal_handlers(stop)
    try:
        runners = await _start_backends(topology)
        try:
            return await _with_proxy(config, topology, duration, stop)
        finally:
            for runner in runners:
                await runner.cleanup()
    finally:
        _remove_signal_handlers(installed)


async def run_demo(duration: float | None, config_path: str | None = None) -> int:
    """Run the demo until ``duration`` seconds pass (None: until SIGINT/SIGTERM).

    ``config_path`` defaults to the packaged ``demo.yaml``. Returns the exit code:
    0 on success, 1 when something could not start, 130 when interrupted
    before traffic started.
    """
    with _config_file(config_path) as config:
        try:
            return await _run(config, duration)
        except (OSError, ValueError) as exc:
            log.error("demo.failed", error=repr(exc))
            sys.stderr.write(f"turnout demo: {exc}\n")
            return 1


def main_demo(duration: float | None) -> int:
    """Entry point for ``turnout demo [--duration S]``."""
    try:
        return asyncio.run(run_demo(duration))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return EXIT_INTERRUPTED
