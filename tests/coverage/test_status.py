"""Per-flag coverage in `GET /status` of a real in-process Turnout, when `coverage:` is set."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from proxy.coverage.live import LiveCoverage
from proxy.decision.table import compile_table
from proxy.observe.stats import Stats
from proxy.runtime.app import Turnout, read_config
from tests.conftest import StartTurnout, make_config, wait_until
from tests.coverage.conftest import CONFIG, LEGACY, NEW

FIXTURE = yaml.safe_load(CONFIG.read_text())
BACKENDS = {"legacy": "http://127.0.0.1:9", "new": "http://127.0.0.1:9"}


async def get_status(turnout: Turnout) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{turnout.admin_port}/status") as response,
    ):
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def status_once_loaded(turnout: Turnout, timeout: float = 10.0) -> dict[str, Any]:
    """``/status`` once its coverage is no longer loading; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (status := await get_status(turnout))["coverage"] == {"loading": True}:
        assert time.monotonic() < deadline, "coverage still loading"
    return status


async def start_with_coverage(
    start_turnout: StartTurnout, legacy: str = str(LEGACY), new: str = str(NEW)
) -> Turnout:
    return await start_turnout(
        *BACKENDS.values(),
        flags=FIXTURE["flags"],
        routes=FIXTURE["routes"],
        coverage={"legacy_openapi": legacy, "new_openapi": new},
    )


async def test_status_shows_coverage_per_flag_at_the_live_percent(
    start_turnout: StartTurnout,
) -> None:
    turnout = await start_with_coverage(start_turnout)
    status = await get_status(turnout)
    flags = {flag["name"]: flag["coverage"] for flag in status["flags"]}
    assert flags["user-api"] == {"legacy_operations": 3, "in_new": 3, "served_by_new": 0.25}
    assert flags["public-api"] == {"legacy_operations": 1, "in_new": 1, "served_by_new": 1.0}
    summary = status["coverage"]
    assert summary["legacy"]["operations"] == 9 and summary["new"]["operations"] == 9
    assert (summary["missing_in_new"], summary["only_in_new"]) == (2, 2)
    assert summary["served_by_new_at_100"]["operations"] == 1

    await turnout.controller.set_percent("user-api", 50, "test")
    status = await get_status(turnout)
    user_api = next(flag for flag in status["flags"] if flag["name"] == "user-api")
    assert user_api["coverage"]["served_by_new"] == 0.5


async def test_without_a_coverage_block_status_has_none(start_turnout: StartTurnout) -> None:
    turnout = await start_turnout(*BACKENDS.values())
    status = await get_status(turnout)
    assert "coverage" not in status
    assert all("coverage" not in flag for flag in status["flags"])
    assert status["unmatched"] == {"requests": 0}


async def test_a_bad_document_shows_an_error_and_a_reload_loads_them_again(
    tmp_path: Path,
) -> None:
    legacy = tmp_path / "legacy.json"
    legacy.write_text('{"openapi": "3.0.3"}')
    config = {
        **FIXTURE,
        "listen": "127.0.0.1:0",
        "admin": {"listen": "127.0.0.1:0"},
        "coverage": {"legacy_openapi": str(legacy), "new_openapi": str(NEW)},
    }
    path = tmp_path / "turnout.yaml"
    path.write_text(yaml.safe_dump(config))
    turnout = Turnout(read_config(str(path)))
    await turnout.start()
    try:
        status = await get_status(turnout)
        error = status["coverage"]["error"]
        assert error.startswith(f"{legacy}: not an OpenAPI 3.x document: ")
        assert all(flag["coverage"] is None for flag in status["flags"])

        legacy.write_bytes(LEGACY.read_bytes())
        assert await turnout.reload()
        status = await get_status(turnout)
        assert status["coverage"]["legacy"]["operations"] == 9
    finally:
        await turnout.stop()


async def test_a_document_that_never_comes_does_not_hang_status(
    start_turnout: StartTurnout, aiohttp_server: Any
) -> None:
    asked = asyncio.Event()
    release = asyncio.Event()

    async def stalled(_: web.Request) -> web.Response:
        asked.set()
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/openapi.json", stalled)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/openapi.json"
    turnout = await start_with_coverage(start_turnout, legacy=url)
    try:
        await asyncio.wait_for(asked.wait(), 10)
        status = await asyncio.wait_for(get_status(turnout), 10)
        assert status["coverage"] == {"loading": True}
        assert status["flags"][0]["coverage"] is None
        release.set()
        # the answer (503) ends the load: the error shows on a later /status
        status = await status_once_loaded(turnout)
        assert status["coverage"] == {"error": f"{url}: cannot read: HTTP 503 Service Unavailable"}
    finally:
        release.set()


async def test_a_reload_while_status_waits_for_the_old_load_still_answers(
    aiohttp_server: Any,
) -> None:
    release = asyncio.Event()

    async def stalled(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/openapi.json", stalled)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/openapi.json"
    loaded = make_config(
        *BACKENDS.values(),
        flags=FIXTURE["flags"],
        routes=FIXTURE["routes"],
        coverage={"legacy_openapi": url, "new_openapi": str(NEW)},
    )
    before, after = (compile_table(loaded.config, h, Stats(), (None, None)) for h in "ab")
    live = LiveCoverage(wait=30)
    try:
        waiting = asyncio.create_task(live.view(before))
        await wait_until(lambda: live.loading)
        live.refresh(after)  # what a reload does: the load `waiting` waits for is dropped
        assert await asyncio.wait_for(waiting, 10) == {"loading": True}
    finally:
        release.set()
        await live.aclose()


async def test_a_failed_load_is_tried_again(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.json"  # not there yet: the backend is still starting
    loaded = make_config(
        *BACKENDS.values(),
        flags=FIXTURE["flags"],
        routes=FIXTURE["routes"],
        coverage={"legacy_openapi": str(legacy), "new_openapi": str(NEW)},
    )
    table = compile_table(loaded.config, "h", Stats(), (None, None))
    live = LiveCoverage(retry=0.2)
    try:
        first = await live.view(table)
        assert first == {"error": f"{legacy}: cannot read: No such file or directory"}
        legacy.write_bytes(LEGACY.read_bytes())
        deadline = time.monotonic() + 10
        while "legacy" not in (view := await live.view(table) or {}):
            assert time.monotonic() < deadline, view
            await asyncio.sleep(0.05)  # each view() starts a retry once one is due
        assert view["legacy"]["operations"] == 9
    finally:
        await live.aclose()


async def test_a_retry_in_progress_shows_the_last_error_without_holding_status(
    aiohttp_server: Any,
) -> None:
    asked = 0
    release = asyncio.Event()

    async def down_then_stalled(_: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        if asked > 1:
            await release.wait()
        return web.Response(status=502)

    app = web.Application()
    app.router.add_get("/openapi.json", down_then_stalled)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/openapi.json"
    loaded = make_config(
        *BACKENDS.values(),
        flags=FIXTURE["flags"],
        routes=FIXTURE["routes"],
        coverage={"legacy_openapi": url, "new_openapi": str(NEW)},
    )
    table = compile_table(loaded.config, "h", Stats(), (None, None))
    live = LiveCoverage(wait=30, retry=0.1)
    failed = {"error": f"{url}: cannot read: HTTP 502 Bad Gateway"}
    try:
        assert await asyncio.wait_for(live.view(table), 10) == failed

        def retry_asked() -> bool:
            live.refresh(table)  # what the admin API's sampling loop does every second
            return asked == 2

        await wait_until(retry_asked)
        assert live.loading
        assert await asyncio.wait_for(live.view(table), 5) == failed
    finally:
        release.set()
        await live.aclose()
