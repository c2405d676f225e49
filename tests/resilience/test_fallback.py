"""Fallback, health checks and ejection against a fault-injecting backend (SPEC §4 steps 5-8).

Each test asserts what the client got, what each backend saw, and how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout
from tests.support.backends import sample, scrape
from tests.support.faulty_backend import Fault, FaultyBackend

FALLBACK_ALL = {"on": ["connect_error", "timeout", "reset", 502, 503, 504]}


@pytest.fixture
async def backends() -> AsyncIterator[tuple[FaultyBackend, FaultyBackend]]:
    legacy, new = FaultyBackend("legacy"), FaultyBackend("new")
    await legacy.start()
    await new.start()
    yield legacy, new
    await new.stop()
    await legacy.stop()


def backend_config(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "timeouts": {"connect": "1s", "response": "5s"}, **extra}


async def start_on_new(
    start_turnout: StartTurnout,
    legacy: FaultyBackend,
    new: FaultyBackend,
    *,
    fallback: dict[str, Any] | None = None,
    request_timeout: str = "60s",
    legacy_extra: dict[str, Any] | None = None,
    new_extra: dict[str, Any] | None = None,
) -> Turnout:
    """A Turnout sending every request of flag `main` to `new`, with a fallback policy."""
    flag: dict[str, Any] = {"percent": 100}
    if fallback is not None:
        flag["fallback"] = fallback
    return await start_turnout(
        legacy.url,
        new.url,
        flags={"main": flag},
        request_timeout=request_timeout,
        backends={
            "legacy": backend_config(legacy.url, **(legacy_extra or {})),
            "new": backend_config(new.url, **(new_extra or {})),
        },
    )


def proxy_url(turnout: Turnout, path: str = "/api/x") -> str:
    return f"http://127.0.0.1:{turnout.proxy_port}{path}"


async def test_get_and_post_fall_back_on_connection_refused(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    new.set_fault(Fault.REFUSE)
    await new.apply()
    turnout = await start_on_new(start_turnout, legacy, new, fallback={"budget_percent": 100})
    async with aiohttp.ClientSession() as session:
        for method in ("GET", "POST"):
            async with session.request(method, proxy_url(turnout), data=b"payload") as response:
                assert response.status == 200
                assert response.headers["x-turnout-backend"] == "legacy"
                assert response.headers["x-turnout-fallback"] == "1"
    assert [r.method for r in legacy.requests] == ["GET", "POST"]
    assert legacy.seen("POST")[0].body == b"payload"
    assert new.requests == []
    text = await scrape(turnout.admin_port)
    labels = {"flag": "main", "from_backend": "new", "to_backend": "legacy"}
    assert sample(text, "turnout_fallbacks_total", reason="connect_error", **labels) == 2


async def test_post_that_got_503_is_not_replayed(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    new.set_fault(Fault.STATUS, status=503)
    turnout = await start_on_new(start_turnout, legacy, new, fallback={})
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy_url(turnout), data=b"write-once") as response:
            assert response.status == 503
            assert response.headers["x-turnout-backend"] == "new"
            assert "x-turnout-fallback" not in response.headers
        async with session.get(proxy_url(turnout)) as response:
            assert response.status == 200  # the same 503 on a GET does fall back
            assert response.headers["x-turnout-backend"] == "legacy"
    assert legacy.seen("POST") == []
    assert len(new.seen("POST")) == 1
    assert len(legacy.seen("GET")) == 1


@pytest.mark.parametrize("status", [404, 405, 501])
async def test_what_new_has_not_built_falls_back_for_safe_methods_only(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout, status: int
) -> None:
    """A route new has not implemented yet (404, 405, 501) is served by legacy for a GET;
    a POST gets new's answer as it is: it may have reached new's handler."""
    legacy, new = backends
    new.set_fault(Fault.STATUS, status=status)
    fallback = {"on": ["connect_error", 404, 405, 501], "budget_percent": 100}
    turnout = await start_on_new(start_turnout, legacy, new, fallback=fallback)
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy_url(turnout)) as response:
            assert response.status == 200
            assert response.headers["x-turnout-backend"] == "legacy"
            assert response.headers["x-turnout-fallback"] == "1"
        async with session.post(proxy_url(turnout), data=b"write-once") as response:
            assert response.status == status
            assert response.headers["x-turnout-backend"] == "new"
    assert len(new.seen("GET")) == 1 and len(legacy.seen("GET")) == 1
    assert len(new.seen("POST")) == 1 and legacy.seen("POST") == []
    text = await scrape(turnout.admin_port)
    labels = {"flag": "main", "from_backend": "new", "to_backend": "legacy"}
    assert sample(text, "turnout_fallbacks_total", reason=str(status), **labels) == 1


async def test_get_that_timed_out_falls_back_within_request_timeout(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    new.set_fault(Fault.HANG)
    turnout = await start_on_new(
        start_turnout,
        legacy,
        new,
        fallback={},
        request_timeout="3s",
        new_extra={"timeouts": {"connect": "1s", "response": "0.5s"}},
    )
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy_url(turnout)) as response:
            assert response.status == 200
            assert response.headers["x-turnout-backend"] == "legacy"
    took = time.monotonic() - started
    assert 0.5 <= took < 3.0
    assert len(new.seen("GET")) == 1 and len(legacy.seen("GET")) == 1


async def test_request_timeout_bounds_the_whole_exchange(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    new.set_fault(Fault.HANG)
    legacy.set_fault(Fault.HANG)
    turnout = await start_on_new(start_turnout, legacy, new, fallback={}, request_timeout="1s")
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy_url(turnout)) as response:
            assert response.status == 504
            assert (await response.json())["error"]["code"] == "backend_timeout"
    assert time.monotonic() - started < 2.0


async def test_reset_mid_body_aborts_the_client_instead_of_appending_an_error(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    new.set_fault(Fault.RESET_MID_BODY)
    turnout = await start_on_new(start_turnout, legacy, new, fallback=FALLBACK_ALL)
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy_url(turnout)) as response:
            assert response.status == 200  # the head had already been relayed
            assert response.headers["x-turnout-backend"] == "new"
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(response.read(), timeout=5)
    assert legacy.requests == []  # nothing is retried once bytes reached the client


async def test_dead_backend_fallbacks_stay_within_the_budget(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    new.set_fault(Fault.REFUSE)
    await new.apply()
    turnout = await start_on_new(
        start_turnout,
        legacy,
        new,
        fallback={"budget_percent": 20},
        new_extra={"outlier_detection": {"consecutive_failures": 100000}},
    )
    total, fell_back, failed = 300, 0, 0
    async with aiohttp.ClientSession() as session:
        for _ in range(total):
            async with session.get(proxy_url(turnout)) as response:
                fell_back += response.headers.get("x-turnout-fallback") == "1"
                failed += response.status == 502
    assert fell_back + failed == total
    assert len(legacy.requests) == fell_back
    assert 0.15 * total <= fell_back <= 0.20 * total + 1


async def test_failing_health_check_moves_traffic_and_back(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    health = {
        "path": "/health",
        "interval": "0.2s",
        "timeout": "0.5s",
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
    }
    turnout = await start_on_new(start_turnout, legacy, new, new_extra={"health": health})

    async def up(backend: str) -> float | None:
        return sample(await scrape(turnout.admin_port), "turnout_backend_up", backend=backend)

    async def side() -> str:
        async with aiohttp.ClientSession() as session:
            async with session.get(proxy_url(turnout)) as response:
                assert response.status == 200
                return response.headers["x-turnout-backend"]

    assert await side() == "new"
    new.set_health(False)
    flipped_at = time.monotonic()
    await _until_async(lambda: up("new"), 0.0, timeout=2.0)
    assert time.monotonic() - flipped_at <= 2 * 0.2 + 0.5  # two intervals, plus a probe
    assert await side() == "legacy"
    text = await scrape(turnout.admin_port)
    labels = {"flag": "main", "from_backend": "new", "to_backend": "legacy"}
    assert sample(text, "turnout_fallbacks_total", reason="ejected", **labels) == 1
    new.set_health(True)
    await _until_async(lambda: up("new"), 1.0, timeout=2.0)
    assert await side() == "new"


async def _until_async(probe: Any, expected: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await probe() != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"metric did not reach {expected} within {timeout}s")
        await asyncio.sleep(0.02)


async def test_both_down_gives_a_json_error_within_the_connect_timeout(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    for backend in backends:
        backend.set_fault(Fault.REFUSE)
        await backend.apply()
    turnout = await start_on_new(start_turnout, legacy, new, fallback={})
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy_url(turnout)) as response:
            assert response.status == 502
            body = await response.json()
    assert body["error"]["code"] == "backend_unreachable"
    assert time.monotonic() - started < 1.0


async def test_flapping_new_no_failed_get_and_no_duplicated_post(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    turnout = await start_on_new(
        start_turnout,
        legacy,
        new,
        fallback={**FALLBACK_ALL, "budget_percent": 100},
        new_extra={
            "outlier_detection": {
                "consecutive_failures": 3,
                "base_ejection_time": "0.5s",
                "max_ejection_time": "0.5s",
            }
        },
    )
    stop = asyncio.Event()
    flips: list[bool] = []

    async def flap() -> None:
        down = True  # the first toggle brings it up
        while not stop.is_set():
            down = not down
            flips.append(down)
            new.set_fault(Fault.REFUSE if down else Fault.NONE)
            await new.apply()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)

    flapper = asyncio.create_task(flap())
    failed_gets, post_statuses = 0, []
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with aiohttp.ClientSession() as session:
            for index in range(2000):
                # Paced at 400 requests/s, so the 2,000 requests span ~5 flaps.
                await asyncio.sleep(max(0.0, started + index / 400 - loop.time()))
                if index % 4 == 3:
                    async with session.post(proxy_url(turnout), data=f"post-{index}") as response:
                        post_statuses.append(response.status)
                else:
                    async with session.get(proxy_url(turnout)) as response:
                        failed_gets += response.status != 200
    finally:
        stop.set()
        await flapper
    assert failed_gets == 0
    bodies = [r.body for r in (*legacy.seen("POST"), *new.seen("POST"))]
    assert len(bodies) == len(set(bodies)), "a POST reached the backends twice"
    assert flips.count(True) >= 2, "new went down fewer than twice"
    assert len(new.requests) > 0 and len(legacy.requests) > 0


async def test_a_body_over_the_replay_bound_is_not_replayed(
    backends: tuple[FaultyBackend, FaultyBackend], start_turnout: StartTurnout
) -> None:
    legacy, new = backends
    new.set_fault(Fault.STATUS, status=503)
    policy = {"methods": ["POST"], "budget_percent": 100, "max_replay_body_bytes": "64KiB"}
    turnout = await start_on_new(start_turnout, legacy, new, fallback=policy)
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy_url(turnout), data=b"s" * 1024) as response:
            assert response.status == 200  # small body: kept, replayed on legacy
            assert response.headers["x-turnout-fallback"] == "1"
        async with session.post(proxy_url(turnout), data=b"L" * 256 * 1024) as response:
            assert response.status == 503  # too large to keep: the 503 stands
            assert response.headers["x-turnout-backend"] == "new"
    assert [len(r.body) for r in legacy.seen("POST")] == [1024]
    assert [len(r.body) for r in new.seen("POST")] == [1024, 256 * 1024]
