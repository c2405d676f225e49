"""Shadow comparison on the real pair: it finds NestJS's order-total bug, and the
differences the rewrite made on purpose count as matches under the example config."""

from __future__ import annotations

from typing import Any

import aiohttp

from proxy.runtime.app import Turnout
from tests.conftest import wait_until
from tests.examples.fixtures import StartExampleTurnout
from tests.examples.pair import TAX_PERCENT, auth

LEGACY_SIDE = {"x-turnout-backend": "legacy"}  # the force header: legacy serves, new is shadow


def shadow_results(turnout: Turnout, flag: str) -> dict[str, int]:
    return {result: n for (name, result), n in turnout.stats.shadow.items() if name == flag}


async def call(
    session: aiohttp.ClientSession, turnout: Turnout, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{turnout.proxy_port}{path}"
    async with session.request(method, url, **kwargs) as response:
        assert response.headers["x-turnout-backend"] == "legacy"
        return response.status, await response.json(content_type=None)


async def test_the_shadow_finds_the_order_total_bug_and_folds_the_deliberate_differences(
    start_example_turnout: StartExampleTurnout,
) -> None:
    turnout = await start_example_turnout(**{"user-api": {"shadow": {
        "percent": 100, "compare": {  # the example's user-api comparison, at 100 %
            "ignore": ["body.avatar_url", "body.detail", "body.message", "body.error",
                       "body.statusCode"],
            "normalize": ["uuid", "iso_timestamp", "unordered_lists"],
            "same_status": [[400, 422]]}}}})  # fmt: skip
    headers = {**auth("shadow-user", "acme"), **LEGACY_SIDE}
    async with aiohttp.ClientSession() as session:
        # The deliberate differences: timestamps' precision and an extra field on the
        # profile, FastAPI's 422 against NestJS's 400, each framework's 401 wording.
        assert (await call(session, turnout, "GET", "/api/users/me", headers=headers))[0] == 200
        assert (await call(session, turnout, "GET", "/api/users/me", headers=LEGACY_SIDE))[0] == 401
        bad = {"items": [{"product_id": "nope", "quantity": 0}]}
        status, _ = await call(
            session, turnout, "POST", "/api/account/orders", json=bad, headers=headers
        )
        assert status == 422
        await wait_until(lambda: sum(shadow_results(turnout, "user-api").values()) == 2)
        await wait_until(lambda: sum(shadow_results(turnout, "account-api").values()) == 1)
        assert shadow_results(turnout, "user-api") == {"match": 2}
        assert shadow_results(turnout, "account-api") == {"match": 1}

        # The bug: new forgets the tax in an order's total.
        order = {"items": [{"product_id": "p-002", "quantity": 2}]}
        status, created = await call(
            session, turnout, "POST", "/api/account/orders", json=order, headers=headers
        )
        assert status == 201
        assert created["total_cents"] == created["subtotal_cents"] * (100 + TAX_PERCENT) // 100
        await wait_until(lambda: shadow_results(turnout, "account-api").get("mismatch") == 1)
        status, _ = await call(session, turnout, "GET", "/api/account/orders", headers=headers)
        assert status == 200
        await wait_until(lambda: shadow_results(turnout, "account-api").get("mismatch") == 2)

        url = f"http://127.0.0.1:{turnout.admin_port}/status"
        async with session.get(url) as response:
            document = await response.json()
    flags = {flag["name"]: flag for flag in document["flags"]}
    account = flags["account-api"]["shadow"]
    assert account["match"] == 1 and account["mismatch"] == 2
    paths = {item["path"]: item for item in account["routes"]["/api/account/**"]}
    assert set(paths) == {"body.total_cents", "body.items[*].total_cents"}
    example = paths["body.total_cents"]["example"]
    assert example == {"legacy": created["total_cents"], "new": created["subtotal_cents"]}
    assert flags["user-api"]["shadow"]["parity"] == 1.0
