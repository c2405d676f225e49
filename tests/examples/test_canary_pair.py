"""The canary on the real pair: a healthy tier is promoted; the tier with NestJS's
order-total bug is rolled back on shadow mismatches, though new never errs there."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from proxy.runtime.app import Turnout
from tests.conftest import wait_until
from tests.examples.fixtures import StartExampleTurnout
from tests.examples.pair import auth

DEADLINE = 45.0
# Latency is not what these tests are about: FastAPI against NestJS on a shared
# machine is whatever it is, so the latency checks are opened wide; errors and
# parity decide.
CANARY = {
    "steps": [20, 50, 100],
    "interval": "1.5s",
    "min_requests": 5,
    "max_p99": "5s",
    "max_p99_increase": None,
    "judge": {"min_effect": 100},
    "max_mismatch_rate": 2,
    "failures_to_rollback": 2,
}

Call = Callable[[aiohttp.ClientSession, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def traffic(turnout: Turnout, call: Call, loops: int = 4) -> AsyncIterator[None]:
    """``loops`` clients calling ``call`` with ever new users until the block ends."""
    users = itertools.count()

    async def loop(session: aiohttp.ClientSession) -> None:
        while True:
            await call(session, next(users) % 2000)

    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{turnout.proxy_port}",
        timeout=aiohttp.ClientTimeout(total=10),
    ) as session:
        tasks = [asyncio.create_task(loop(session)) for _ in range(loops)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def state(turnout: Turnout, flag: str) -> Any:
    assert turnout.canary is not None
    return turnout.canary.progress(flag)


async def test_the_canary_promotes_a_healthy_tier(
    start_example_turnout: StartExampleTurnout,
) -> None:
    shadow = {"percent": 100, "compare": {
        "ignore": ["body.avatar_url"], "normalize": ["iso_timestamp"]}}  # fmt: skip
    turnout = await start_example_turnout(
        **{"user-api": {"percent": 0, "shadow": shadow, "canary": CANARY}}
    )

    async def profile(session: aiohttp.ClientSession, user: int) -> None:
        async with session.get("/api/users/me", headers=auth(f"user-{user}", "acme")) as got:
            assert got.status == 200
            await got.read()

    async with traffic(turnout, profile):
        await wait_until(lambda: state(turnout, "user-api").state == "promoted", DEADLINE)
    assert turnout.table.flags["user-api"].percent == 100
    assert turnout.stats.shadow.get(("user-api", "mismatch"), 0) == 0


async def test_the_canary_rolls_back_the_tier_with_the_bug_on_shadow_mismatch(
    start_example_turnout: StartExampleTurnout,
) -> None:
    turnout = await start_example_turnout(**{"account-api": {"percent": 0, "canary": CANARY}})
    order = {"items": [{"product_id": "p-002", "quantity": 1}]}

    async def buy(session: aiohttp.ClientSession, user: int) -> None:
        headers = auth(f"buyer-{user}", "acme")
        async with session.post("/api/account/orders", json=order, headers=headers) as got:
            assert got.status == 201  # new answers too, without an error: only wrongly
            await got.read()

    async with traffic(turnout, buy):
        await wait_until(lambda: state(turnout, "account-api").state == "rolled_back", DEADLINE)
    progress = state(turnout, "account-api")
    assert "mismatch" in str(progress.reason)
    assert turnout.table.flags["account-api"].percent == 0
    assert turnout.stats.shadow[("account-api", "mismatch")] > 0
