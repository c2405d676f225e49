"""`--workers N`: the supervisor's totals never go backwards.

Real worker processes (the same ones `turnout serve --workers 2` runs) with the
supervisor's view of them in this process, so a test can stop or kill one
worker and read the totals right after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.config.loader import read_config
from proxy.observe.stats import Snapshot
from proxy.runtime.supervisor import SupervisorControl
from proxy.runtime.workers import CrashWindow, WorkerSet
from tests.runtime.test_serve_process import write_config

SCRAPE_TIMEOUT = 0.5  # a stopped worker misses a scrape after this long


def requests_in(snapshot: Snapshot | None) -> int:
    return sum(row[-1] for row in snapshot["requests"]) if snapshot else 0


@pytest.fixture
async def workers(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> AsyncIterator[tuple[WorkerSet, SupervisorControl, int]]:
    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    backend = await aiohttp_server(app)
    path, port, _ = write_config(tmp_path, str(backend.make_url("")))
    loaded = read_config(str(path))
    workers = WorkerSet(loaded, 2, snapshot_timeout=SCRAPE_TIMEOUT)
    control = SupervisorControl(loaded, workers)
    try:
        await workers.start()
        yield workers, control, port
    finally:
        for process in workers.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
        await workers.stop(grace=5)


async def traffic_until_both_workers_served(workers: WorkerSet, port: int) -> None:
    """New connections (SO_REUSEPORT spreads them) until each worker counted some."""
    deadline = time.monotonic() + 20
    user = 0
    while True:
        for _ in range(10):
            user += 1
            connector = aiohttp.TCPConnector(force_close=True)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(f"http://127.0.0.1:{port}/x", headers={"x-user-id": f"u{user}"}) as r,
            ):
                assert r.status == 200
        if all(requests_in(s) > 0 for s in await workers.snapshots()):
            return
        assert time.monotonic() < deadline, "SO_REUSEPORT never reached both workers"


async def test_a_worker_that_misses_a_scrape_keeps_its_counts_in_the_total(
    workers: tuple[WorkerSet, SupervisorControl, int],
) -> None:
    worker_set, control, port = workers
    await traffic_until_both_workers_served(worker_set, port)
    before = requests_in(await control.snapshot())
    stopped = worker_set.processes[1].pid
    os.kill(stopped, signal.SIGSTOP)
    try:
        started = time.monotonic()
        during = requests_in(await control.snapshot())
        assert time.monotonic() - started < SCRAPE_TIMEOUT + 3  # waited for it, not forever
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert during == before
    assert requests_in(await control.snapshot()) == before


async def test_a_restarted_workers_counts_stay_in_the_total(
    workers: tuple[WorkerSet, SupervisorControl, int],
) -> None:
    worker_set, control, port = workers
    await traffic_until_both_workers_served(worker_set, port)
    before = requests_in(await control.snapshot())
    watcher = asyncio.create_task(worker_set.watch(lambda: control.controller.state))
    try:
        old = worker_set.processes[0]
        old.kill()
        deadline = time.monotonic() + 20
        while worker_set.processes[0] is old or not worker_set.alive():
            assert time.monotonic() < deadline, "the worker was not restarted"
            assert requests_in(await control.snapshot()) >= before
            await asyncio.sleep(0.05)
        assert requests_in(await control.snapshot()) == before  # the new one starts at 0
        assert (await control.snapshot())["worker_restarts"] == 1  # what the alert watches
        await traffic_until_both_workers_served(worker_set, port)
        assert requests_in(await control.snapshot()) > before
    finally:
        watcher.cancel()


def test_the_crash_window_counts_only_exits_close_together() -> None:
    window = CrashWindow(limit=3, seconds=30)
    assert [window.exited(t) for t in (0, 20, 40, 55)] == [False, False, False, False]
    assert window.exited(60)  # 40, 55, 60: three within 30 s
    assert str(window) == "3 worker exits within 30 s"
