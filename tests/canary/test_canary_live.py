"""The canary end to end: real backends, real traffic through a real Turnout, 1 s intervals.

Every wait is a condition with a deadline; the deadlines leave room for a busy
2-core machine (an interval is 1 s, a whole canary here takes a few).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.admin.client import AdminClient, AdminError
from proxy.canary.runner import CanaryRunner
from proxy.canary.tap import CanaryTap
from proxy.canary.window import ShadowNumbers
from proxy.cli import main
from proxy.config.loader import read_config
from proxy.exchange.exchange import Exchange
from proxy.exchange.hooks import EndTap, Outcome
from proxy.runtime.app import Turnout
from tests.conftest import BASE_CONFIG, make_config, wait_until
from tests.support.backends import sample, scrape, unused_port

TOKEN = "canary-token"
DEADLINE = 20.0  # seconds for a whole canary of a few 1 s intervals


def backend(
    delay: float = 0.0, fail_every: int = 0, body: dict[str, Any] | None = None
) -> web.Application:
    """Answers 200 (with ``body``) after ``delay`` s; with ``fail_every=2`` every second
    answer is a 500."""
    counter = itertools.count(1)

    async def answer(_: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        if fail_every and next(counter) % fail_every == 0:
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response(body or {"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


class Traffic:
    """Client loops sending GETs with varied user ids until stopped; counts per backend."""

    def __init__(self, port: int, loops: int = 6) -> None:
        self.url = f"http://127.0.0.1:{port}/api/items"
        self.loops = loops
        self.by_backend: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Traffic:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        users = itertools.count()
        self._tasks = [asyncio.create_task(self._loop(users)) for _ in range(self.loops)]
        return self

    async def _loop(self, users: itertools.count[int]) -> None:
        assert self._session is not None
        while True:
            headers = {"x-user-id": f"user-{next(users) % 5000}"}
            async with self._session.get(self.url, headers=headers) as response:
                await response.read()
                name = response.headers.get("x-turnout-backend", "?")
                self.by_backend[name] = self.by_backend.get(name, 0) + 1

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert self._session is not None
        await self._session.close()


Start = Callable[..., Awaitable[Turnout]]


@pytest.fixture
async def start(
    aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Start]:
    """``await start(legacy_app, new_app, **canary)`` -> a running Turnout whose flag
    ``main`` has that canary (1 s interval), with a state file and an admin token."""
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("TURNOUT_ADMIN_URL", raising=False)
    started: list[Turnout] = []

    async def run(
        legacy: web.Application,
        new: web.Application,
        flag: dict[str, Any] | None = None,
        new_backend: dict[str, Any] | None = None,
        **canary: Any,
    ) -> Turnout:
        legacy_server, new_server = await aiohttp_server(legacy), await aiohttp_server(new)
        settings = {"steps": [20, 50, 100], "interval": "1s", "min_requests": 20, **canary}
        new_url = str(new_server.make_url(""))
        backends = {"new": {"url": new_url, **new_backend}} if new_backend else {}
        loaded = make_config(
            str(legacy_server.make_url("")),
            new_url,
            backends=backends,
            admin={"listen": "127.0.0.1:0", "token_env": "TURNOUT_ADMIN_TOKEN"},
            state_file=str(tmp_path / "state.json"),
            flags={"main": {"percent": 0, "canary": settings, **(flag or {})}},
        )
        turnout = Turnout(loaded)
        await turnout.start()
        started.append(turnout)
        return turnout

    yield run
    for turnout in started:
        await turnout.stop()


def runner(turnout: Turnout) -> CanaryRunner:
    assert turnout.canary is not None
    return turnout.canary


def state_of(turnout: Turnout) -> str:
    return str(runner(turnout).progress("main").state)


def percent_of(turnout: Turnout) -> float:
    return turnout.table.flags["main"].percent


def last_checks(turnout: Turnout) -> dict[str, str]:
    last = runner(turnout).progress("main").last
    assert last is not None
    return {check["name"]: check["result"] for check in last["checks"]}


def admin(turnout: Turnout) -> AdminClient:
    return AdminClient(f"http://127.0.0.1:{turnout.admin_port}", TOKEN)


async def test_a_healthy_new_walks_the_steps_to_promoted_and_the_webhook_sees_each_move(
    aiohttp_server: AiohttpServer, start: Start
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    hook_server = await aiohttp_server(receiver)
    turnout = await start(
        backend(delay=0.02), backend(delay=0.02), webhook=str(hook_server.make_url("/hook"))
    )
    assert (state_of(turnout), percent_of(turnout)) == ("progressing", 20)
    async with Traffic(turnout.proxy_port) as traffic:
        await wait_until(lambda: state_of(turnout) == "promoted", timeout=DEADLINE)
    assert percent_of(turnout) == 100
    assert traffic.by_backend.get("new", 0) > 0 and traffic.by_backend.get("legacy", 0) > 0
    await wait_until(lambda: len(received) == 3)
    moves = [(e["from"], e["to"], e["percent_before"], e["percent_after"]) for e in received]
    assert moves == [
        ("pending", "progressing", 0, 20),
        ("progressing", "progressing", 20, 50),
        ("progressing", "promoted", 50, 100),
    ]
    assert received[2]["verdict"]["result"] == "pass"
    assert received[2]["verdict"]["new"]["requests"] >= 20
    metrics = await scrape(turnout.admin_port)
    assert sample(metrics, "turnout_canary_state", flag="main", state="promoted") == 1
    assert sample(metrics, "turnout_canary_state", flag="main", state="progressing") == 0
    assert sample(metrics, "turnout_flag_percent", flag="main") == 100
    passes = sample(metrics, "turnout_canary_judgements_total", flag="main", result="pass")
    assert passes is not None and passes >= 2


async def test_a_new_failing_half_its_requests_is_rolled_back_and_stays_so_after_a_restart(
    start: Start,
) -> None:
    turnout = await start(backend(), backend(fail_every=2), failures_to_rollback=2)
    async with Traffic(turnout.proxy_port):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
        # within failures_to_rollback judged intervals, at the first step
        assert state_of(turnout) == "rolled_back"
        judged = await turnout.snapshot()
    assert percent_of(turnout) == 0
    results = {row[1]: row[2] for row in judged["canary_judgements"]}
    assert results.get("fail") == 2 and "pass" not in results  # (inconclusive: a slow machine)
    progress = runner(turnout).progress("main")
    assert progress.step == 0 and "new's error rate" in progress.reason
    status = await admin(turnout).status()
    flag = status["flags"][0]
    assert (flag["phase"], flag["canary"]["state"]) == ("rolled_back", "rolled_back")
    assert flag["canary"]["last"]["result"] == "fail"

    await turnout.stop()
    again = await start(backend(), backend(fail_every=2), failures_to_rollback=2)
    assert (state_of(again), percent_of(again)) == ("rolled_back", 0)
    async with Traffic(again.proxy_port) as traffic:
        await wait_until(lambda: runner(again).intervals.get("main", 0) >= 2, timeout=DEADLINE)
    assert (state_of(again), percent_of(again)) == ("rolled_back", 0)
    assert traffic.by_backend.get("new", 0) == 0


async def test_fallbacks_from_new_are_new_errors_though_clients_see_none(start: Start) -> None:
    turnout = await start(
        backend(), backend(fail_every=2), flag={"fallback": {"on": [500], "budget_percent": 100}}
    )
    async with Traffic(turnout.proxy_port) as traffic:
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    assert last_checks(turnout)["error_rate"] == "fail"
    assert set(traffic.by_backend) <= {"legacy", "new"}  # every answer came from a backend
    snapshot = await turnout.snapshot()
    client_codes = {row[4] for row in snapshot["requests"] if row[2] == "legacy"}
    assert client_codes == {200}


async def test_a_new_that_is_down_and_ejected_is_rolled_back_not_paused(start: Start) -> None:
    # After two 503s new is ejected: its share of the traffic fails over to legacy.
    # Those requests were new's to serve: they count as its errors, so the canary
    # sees a failing new (rolled back), not too little traffic (paused).
    ejecting = {"outlier_detection": {"consecutive_failures": 2, "base_ejection_time": "30s"}}
    down = backend(fail_every=1)
    turnout = await start(backend(), down, new_backend=ejecting, max_inconclusive=2)
    async with Traffic(turnout.proxy_port):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    assert "new's error rate" in runner(turnout).progress("main").reason


async def test_a_new_whose_p99_exceeds_the_limit_is_rolled_back_past_a_hanging_webhook(
    aiohttp_server: AiohttpServer, start: Start
) -> None:
    release, calls = asyncio.Event(), []

    async def hang(request: web.Request) -> web.Response:
        calls.append(await request.json())
        await release.wait()  # never answers in time: the 2 s webhook timeout ends it
        return web.Response(text="late")

    receiver = web.Application()
    receiver.router.add_post("/hook", hang)
    hook = str((await aiohttp_server(receiver)).make_url("/hook"))
    turnout = await start(backend(), backend(delay=0.15), max_p99="100ms", webhook=hook)
    async with Traffic(turnout.proxy_port):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    await wait_until(lambda: [c["to"] for c in calls] == ["progressing", "rolled_back"])
    release.set()
    assert last_checks(turnout)["p99"] == "fail"
    assert "new's p99" in runner(turnout).progress("main").reason


async def test_a_new_30_percent_slower_under_the_absolute_limit_is_caught_by_the_relative_test(
    start: Start,
) -> None:
    # 40 ms against 52 ms: far under max_p99 (800 ms), but the distributions differ.
    turnout = await start(backend(delay=0.04), backend(delay=0.052))
    async with Traffic(turnout.proxy_port, loops=8):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    checks = last_checks(turnout)
    assert (checks["p99"], checks["error_rate"], checks["latency"]) == ("pass", "pass", "fail")
    assert "new is slower than legacy" in runner(turnout).progress("main").reason


async def test_too_little_traffic_stays_inconclusive_and_pauses(start: Start) -> None:
    refused = f"http://127.0.0.1:{unused_port()}/hook"  # failures are logged, nothing more
    turnout = await start(
        backend(), backend(), min_requests=100_000, max_inconclusive=2, webhook=refused
    )
    async with Traffic(turnout.proxy_port, loops=2):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    progress = runner(turnout).progress("main")
    assert (progress.state, progress.step, percent_of(turnout)) == ("paused", 0, 20)
    assert progress.reason.startswith("not enough traffic")
    snapshot = await turnout.snapshot()
    assert {row[1] for row in snapshot["canary_judgements"]} == {"inconclusive"}
    seen = runner(turnout).intervals["main"]
    await wait_until(lambda: runner(turnout).intervals["main"] >= seen + 1, timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("paused", 20)  # no longer judged


async def cli(capsys: pytest.CaptureFixture[str], turnout: Turnout, *argv: str) -> str:
    """`turnout ARGV --admin URL` in a thread (it runs its own loop); its stdout (where
    the proxy's own log lines land too, in this one process)."""
    url = f"http://127.0.0.1:{turnout.admin_port}"
    code = await asyncio.to_thread(main, [*argv, "--admin", url])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), out
    return out


async def test_confirm_promotion_holds_at_the_last_step_until_promote(
    start: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    turnout = await start(backend(delay=0.02), backend(delay=0.02), confirm_promotion=True)
    with pytest.raises(AdminError, match="unknown flag nope"):
        await admin(turnout).promote("nope")
    async with Traffic(turnout.proxy_port):
        await wait_until(lambda: runner(turnout).progress("main").holding, timeout=DEADLINE)
        seen = runner(turnout).intervals["main"]
        await wait_until(lambda: runner(turnout).intervals["main"] >= seen + 1, timeout=DEADLINE)
        assert (state_of(turnout), percent_of(turnout)) == ("progressing", 50)
        status = await cli(capsys, turnout, "status")
        assert "holding step 2/3" in status
        head = "canary main: holding step 2/3 (waiting for turnout promote), next judgement in"
        assert head in status
        # the last verdict may be anything on a loaded machine: its shape is the point here
        assert re.search(r"\n  last verdict: \w+ \(new \d+ req, legacy \d+ req\)\n", status)
        for check in ("error_rate", "error_rate_increase", "p99", "p99_increase", "latency"):
            assert re.search(rf"\n  {check} +(pass|fail) +\w+=", status), check
        assert re.search(r"\n  mismatch_rate +skipped +- not configured", status)
        promoted = await cli(capsys, turnout, "promote", "main")
    assert promoted.splitlines()[-1] == "main: 50% -> 100% (promoted)"  # after the logs
    assert (state_of(turnout), percent_of(turnout)) == ("promoted", 100)


async def test_set_pauses_the_canary_and_resume_restarts_it_at_its_step(start: Start) -> None:
    turnout = await start(backend(), backend())
    client = admin(turnout)
    await client.set_percent("main", 5)
    assert (state_of(turnout), percent_of(turnout)) == ("paused", 5)
    answer = await client.resume("main")
    assert (answer["after"], state_of(turnout), percent_of(turnout)) == (20, "progressing", 20)
    await client.rollback("main")
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    with pytest.raises(AdminError, match="rolled back"):
        await client.promote("main")


class CountingTap(EndTap):
    """Another feature's tap on the same flag (as shadow mirroring registers one)."""

    def __init__(self) -> None:
        self.finished_requests = 0

    def open(self, exchange: Exchange) -> CountingTap:
        return self

    def finished(self, exchange: Exchange, outcome: Outcome, status: int) -> None:
        self.finished_requests += 1


async def test_the_canary_tap_shares_its_flag_with_another_feature(start: Start) -> None:
    turnout = await start(backend(), backend(), interval="1h")
    other = CountingTap()
    turnout.service.set_taps("other", {"main": other})
    async with aiohttp.ClientSession() as session:
        for user in range(30):
            url = f"http://127.0.0.1:{turnout.proxy_port}/x"
            async with session.get(url, headers={"x-user-id": f"u{user}"}) as response:
                assert response.status == 200
    window = turnout.service.tap_factories["main"][0]
    assert isinstance(window, CanaryTap)
    assert sum(side.requests for side in window.current.sides) == 30
    assert other.finished_requests == 30
    await turnout.stop()  # the canary takes its own tap away, and only its own
    assert turnout.service.tap_factories == {"main": (other,)}


async def test_a_reload_starts_a_new_canary_and_stops_a_removed_one(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    legacy, new = await aiohttp_server(backend()), await aiohttp_server(backend())
    path = tmp_path / "turnout.yaml"

    def write(flag: dict[str, Any]) -> None:
        data = {
            **BASE_CONFIG,
            "backends": {"legacy": {"url": str(legacy.make_url(""))},
                         "new": {"url": str(new.make_url(""))}},
            "flags": {"main": flag},
        }  # fmt: skip
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    write({"percent": 0})
    turnout = Turnout(read_config(str(path)))
    await turnout.start()
    try:
        assert runner(turnout).status() == {} and turnout.service.tap_factories == {}
        write({"percent": 0, "canary": {"steps": [5, 50], "interval": "1h"}})
        assert await turnout.reload()
        assert (state_of(turnout), percent_of(turnout)) == ("progressing", 5)
        assert "main" in turnout.service.tap_factories
        write({"percent": 0})
        assert await turnout.reload()
        assert turnout.service.tap_factories == {} and runner(turnout).status() == {}
        assert percent_of(turnout) == 5  # the canary's override stays until `resume`
    finally:
        await turnout.stop()


async def test_shadow_mismatches_fail_a_step(start: Start) -> None:
    # Every request is mirrored to the other side, and the two sides answer differently.
    turnout = await start(
        backend(body={"total": 1}), backend(body={"total": 2}),
        flag={"shadow": {"percent": 100}}, max_mismatch_rate="2%",
    )  # fmt: skip
    async with Traffic(turnout.proxy_port):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    assert last_checks(turnout)["mismatch_rate"] == "fail"
    assert "shadow mismatch rate 100.00% > 2.00%" in runner(turnout).progress("main").reason


async def test_a_parity_source_of_ones_own_is_asked_once_per_interval(start: Start) -> None:
    turnout = await start(backend(), backend(), max_mismatch_rate="2%")
    asked: list[str] = []

    def parity(flag: str) -> ShadowNumbers:
        asked.append(flag)
        return ShadowNumbers(compared=100, mismatched=10)  # 10 % since the last call

    runner(turnout).parity = parity
    async with Traffic(turnout.proxy_port):
        await wait_until(lambda: state_of(turnout) != "progressing", timeout=DEADLINE)
    assert (state_of(turnout), percent_of(turnout)) == ("rolled_back", 0)
    assert "shadow mismatch rate 10.00% > 2.00%" in runner(turnout).progress("main").reason
    assert asked == ["main"] * runner(turnout).intervals["main"]
