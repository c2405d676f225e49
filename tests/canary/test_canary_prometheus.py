"""The canary judged on the fleet's numbers: a real Prometheus (Debian's package)
scraping real Turnouts every second, ``canary.prometheus_url`` pointing at it.

Intervals are 3 s with a 1 s lag here (a 3 s window holds about three scrapes);
the first intervals are inconclusive until Prometheus has the new series, so
``max_inconclusive`` is high where a verdict is awaited. Every wait is a
condition with a deadline that leaves room for a busy 2-core machine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.admin.client import AdminClient
from proxy.admin.render import format_status
from proxy.config.loader import read_config
from proxy.runtime.app import Turnout
from tests.canary.test_canary_live import TOKEN, Traffic, backend, percent_of, runner, state_of
from tests.conftest import BASE_CONFIG, make_config, wait_until
from tests.runtime.test_serve_process import free_port
from tests.support.backends import unused_port
from tests.support.prometheus import start_prometheus

__all__ = ["start_prometheus"]  # the fixture, used by name

DEADLINE = 90.0  # Prometheus' first scrape, then a few 3 s intervals, on a busy machine
FLEET = {"interval": "3s", "prometheus_lag": "1s", "min_requests": 20, "max_inconclusive": 100}

Start = Callable[..., Awaitable[Turnout]]


@pytest.fixture
async def start(
    aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Start]:
    """``await start(legacy_app, new_app, admin_port, flag, name)`` -> a running Turnout
    (its admin API on ``admin_port``, where Prometheus scrapes it) whose flag ``main``
    is ``flag``."""
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    started: list[Turnout] = []
    servers: dict[int, str] = {}

    async def url_of(app: web.Application) -> str:
        if id(app) not in servers:
            servers[id(app)] = str((await aiohttp_server(app)).make_url(""))
        return servers[id(app)]

    async def run(
        legacy: web.Application,
        new: web.Application,
        admin_port: int,
        flag: dict[str, Any],
        name: str = "judge",
    ) -> Turnout:
        loaded = make_config(
            await url_of(legacy),
            await url_of(new),
            admin={"listen": f"127.0.0.1:{admin_port}", "token_env": "TURNOUT_ADMIN_TOKEN"},
            state_file=str(tmp_path / f"{name}-state.json"),
            flags={"main": flag},
        )
        turnout = Turnout(loaded)
        await turnout.start()
        started.append(turnout)
        return turnout

    yield run
    for turnout in started:
        await turnout.stop()


def canary(url: str, **settings: Any) -> dict[str, Any]:
    return {"percent": 0, "canary": {"steps": [50, 100], "prometheus_url": url, **settings}}


def last_verdict(turnout: Turnout) -> dict[str, Any]:
    last = runner(turnout).progress("main").last
    assert last is not None
    return last


async def test_a_failing_new_is_rolled_back_on_the_numbers_prometheus_scraped(
    start: Start, start_prometheus: Any
) -> None:
    admin_port = free_port()
    prometheus = await start_prometheus([f"127.0.0.1:{admin_port}"])
    settings = {**FLEET, "failures_to_rollback": 1}
    turnout = await start(
        backend(), backend(fail_every=2), admin_port, canary(prometheus.url, **settings)
    )
    assert "main" not in turnout.service.tap_factories  # nothing counted twice
    async with Traffic(turnout.proxy_port):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    verdict = last_verdict(turnout)
    assert (verdict["result"], verdict["source"]) == ("fail", "prometheus")
    assert verdict["new"]["requests"] >= 20 and verdict["new"]["errors"] > 0
    assert "new's error rate" in runner(turnout).progress("main").reason
    snapshot = await turnout.snapshot()
    assert "pass" not in {row[1] for row in snapshot["canary_judgements"]}
    status = await AdminClient(f"http://127.0.0.1:{admin_port}", TOKEN).status()
    assert status["flags"][0]["canary"]["last"]["source"] == "prometheus"
    shown = format_status(status)
    assert re.search(
        r"last verdict: fail \(new \d+ req, legacy \d+ req, the fleet's numbers", shown
    )


async def test_the_judge_sees_the_requests_another_replica_served(
    start: Start, start_prometheus: Any
) -> None:
    # Two replicas, one Prometheus: the judge serves no request at all, the other
    # one (the flag at the first step's 50 %, no canary of its own) serves them all.
    judge_admin, other_admin = free_port(), free_port()
    prometheus = await start_prometheus([f"127.0.0.1:{judge_admin}", f"127.0.0.1:{other_admin}"])
    legacy, new = backend(delay=0.01), backend(delay=0.01)
    judge = await start(legacy, new, judge_admin, canary(prometheus.url, **FLEET))
    other = await start(legacy, new, other_admin, {"percent": 50}, name="other")
    async with Traffic(other.proxy_port):
        await wait_until(lambda: state_of(judge) != "progressing", timeout=DEADLINE)
    assert (state_of(judge), percent_of(judge)) == ("promoted", 100)
    verdict = last_verdict(judge)
    assert (verdict["result"], verdict["source"]) == ("pass", "prometheus")
    assert verdict["new"]["requests"] >= 20 and verdict["legacy"]["requests"] >= 20
    served_by_judge = (await judge.snapshot())["requests"]
    assert [row for row in served_by_judge if row[1] == "main"] == []


async def unavailable(aiohttp_server: AiohttpServer, kind: str) -> tuple[str, asyncio.Event]:
    """The URL of a Prometheus that gives no numbers, in one of several ways."""
    release = asyncio.Event()
    if kind == "refused":
        return f"http://127.0.0.1:{unused_port()}", release

    async def query(_: web.Request) -> web.StreamResponse:
        if kind == "hangs":
            await release.wait()
        if kind == "503":
            return web.Response(status=503, text="Service Unavailable")
        if kind == "bad_data":
            body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
            return web.json_response(body, status=400)
        return web.Response(text="<html>a login page</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/"), release


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("refused", "Cannot connect"),
        ("hangs", "no answer from"),
        ("503", "answered 503: Service Unavailable"),
        ("bad_data", "answered 400: parse error"),
        ("html", "not a JSON object"),
    ],
)
async def test_a_prometheus_without_numbers_makes_intervals_inconclusive_then_pauses(
    aiohttp_server: AiohttpServer, start: Start, kind: str, why: str
) -> None:
    url, release = await unavailable(aiohttp_server, kind)
    settings = {"interval": "1s", "prometheus_lag": "0s", "min_requests": 5, "max_inconclusive": 3}
    turnout = await start(backend(), backend(), free_port(), canary(url, **settings))
    try:
        async with Traffic(turnout.proxy_port, loops=2):  # a healthy new with traffic
            await wait_until(lambda: state_of(turnout) != "progressing", timeout=30)
    finally:
        release.set()
    progress = runner(turnout).progress("main")
    assert (progress.state, percent_of(turnout)) == ("paused", 50)  # never promoted
    assert progress.reason.startswith("prometheus unavailable: ")
    assert why in progress.reason and "(3 inconclusive intervals in a row)" in progress.reason
    assert last_verdict(turnout)["source"] == "prometheus"
    snapshot = await turnout.snapshot()
    assert {(row[1], row[2]) for row in snapshot["canary_judgements"]} == {("inconclusive", 3)}


async def test_a_reload_moves_a_flag_between_its_own_numbers_and_prometheus(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    # Judged from Prometheus, the flag's requests are not counted by a tap here.
    legacy, new = await aiohttp_server(backend()), await aiohttp_server(backend())
    path = tmp_path / "turnout.yaml"

    def write(**settings: Any) -> None:
        data = {
            **BASE_CONFIG,
            "backends": {"legacy": {"url": str(legacy.make_url(""))},
                         "new": {"url": str(new.make_url(""))}},
            "flags": {"main": {"percent": 0, "canary": {"steps": [5, 50], "interval": "1h",
                                                        **settings}}},
        }  # fmt: skip
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    write()
    turnout = Turnout(read_config(str(path)))
    await turnout.start()
    try:
        assert "main" in turnout.service.tap_factories
        write(prometheus_url=f"http://127.0.0.1:{unused_port()}")
        assert await turnout.reload()
        assert turnout.service.tap_factories == {}
        assert (state_of(turnout), percent_of(turnout)) == ("progressing", 5)  # same canary
        write()
        assert await turnout.reload()
        assert "main" in turnout.service.tap_factories
    finally:
        await turnout.stop()


async def test_the_judge_sleeps_through_the_lag_instead_of_spinning(start: Start) -> None:
    # The loop wakes at the interval's end; the flag is judged only lag seconds later.
    settings = {"interval": "1s", "prometheus_lag": "3s", "max_inconclusive": 100}
    url = f"http://127.0.0.1:{unused_port()}"
    turnout = await start(backend(), backend(), free_port(), canary(url, **settings))
    judge, ticks = runner(turnout), []
    judging = judge.tick

    async def counted(now: float) -> None:
        ticks.append(now)
        await judging(now)

    judge.tick = counted  # type: ignore[method-assign]
    await wait_until(lambda: judge.intervals.get("main", 0) >= 1, timeout=30)
    # about one wake-up a second (at most) over the 4 s before the first judgement
    assert len(ticks) <= 12, f"{len(ticks)} wake-ups"
