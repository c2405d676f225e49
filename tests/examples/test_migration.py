"""Turnout in front of the real example pair, built from config/examples/fastapi-to-nestjs.yaml.

Every test checks both what the client got (status, ``x-turnout-backend``, the
body's own marks of the side that answered) and what each service received
(``/_test/received`` by ``x-test-id``): a request reached exactly one side, once,
unless a fallback is expected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from proxy.runtime.app import Turnout
from tests.examples.fixtures import EXAMPLE_CONFIG, StartExampleTurnout, example_config
from tests.examples.pair import TEST_ID_HEADER, auth, new_test_id, received
from tests.examples.services import ServiceProcess

USERS = 400
CONCURRENCY = 16


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def url(turnout: Turnout, path: str) -> str:
    return f"http://127.0.0.1:{turnout.proxy_port}{path}"


async def send(
    session: aiohttp.ClientSession, method: str, target: str, **kwargs: Any
) -> tuple[int, CIMultiDict[str], Any]:
    """(status, headers (case-insensitive), JSON body or None)."""
    async with session.request(method, target, **kwargs) as response:
        body = await response.json() if response.status != 204 else None
        return response.status, CIMultiDict(response.headers), body


def test_the_example_config_validates_with_one_flag_per_tier() -> None:
    config = example_config("http://127.0.0.1:1", "http://127.0.0.1:2").config
    assert sorted(config.flags) == [
        "account-api", "platform-api", "public-api", "tenant-api", "user-api",
    ]  # fmt: skip
    assert config.sticky[0].kind == "jwt_claim" and config.sticky[0].claim == "sub"
    for flag in config.flags.values():
        assert flag.fallback is not None and 404 in flag.fallback.on
    assert "# shadow:" in EXAMPLE_CONFIG.read_text() and "# canary:" in EXAMPLE_CONFIG.read_text()


async def test_users_stick_to_one_side_by_jwt_sub_and_split_about_half(
    start_example_turnout: StartExampleTurnout, session: aiohttp.ClientSession
) -> None:
    turnout = await start_example_turnout()  # user-api is at 50 % in the file
    limit = asyncio.Semaphore(CONCURRENCY)

    async def sides_of(user: int) -> list[str]:
        sides = []
        for _ in range(2):
            async with limit:
                status, headers, body = await send(
                    session, "GET", url(turnout, "/api/users/me"), headers=auth(f"user-{user}")
                )
            assert status == 200 and body["id"] == f"user-{user}"
            side = headers["x-turnout-backend"]
            assert ("avatar_url" in body) == (side == "new")  # the side that really answered
            sides.append(side)
        return sides

    results = await asyncio.gather(*(sides_of(user) for user in range(USERS)))
    assert all(first == second for first, second in results), "a user changed sides"
    on_new = sum(first == "new" for first, _ in results)
    assert 0.4 * USERS <= on_new <= 0.6 * USERS, f"{on_new} of {USERS} users on new"


async def test_a_targeted_tenant_is_on_new_and_the_others_stay_on_legacy(
    start_example_turnout: StartExampleTurnout, session: aiohttp.ClientSession
) -> None:
    turnout = await start_example_turnout()  # tenant-api: 0 %, acme-beta targeted to new
    for user in range(20):
        for tenant, side, first_member in (("acme-beta", "new", "Bob"), ("acme", "legacy", "Zoe")):
            status, headers, body = await send(
                session,
                "GET",
                url(turnout, "/api/tenants/current/members"),
                headers=auth(f"member-{user}", tenant),
            )
            assert status == 200 and headers["x-turnout-backend"] == side
            assert body["items"][0]["name"].startswith(first_member)  # each side's list order


async def test_writes_reach_exactly_the_routed_side_once(
    start_example_turnout: StartExampleTurnout,
    session: aiohttp.ClientSession,
    legacy_fastapi: str,
    new_nestjs: str,
) -> None:
    turnout = await start_example_turnout(**{"account-api": {"percent": 50}})
    bases = {"legacy": legacy_fastapi, "new": new_nestjs}
    order = {"items": [{"product_id": "p-002", "quantity": 2}]}
    seen_sides = set()
    for user in range(24):
        headers = auth(f"writer-{user}")
        writes: list[tuple[str, str, dict[str, Any] | None, int]] = [
            ("POST", "/api/account/orders", order, 201),
            ("PUT", "/api/users/me/preferences", {"language": "fr", "theme": "dark",
                                                  "newsletter": True}, 200),
        ]  # fmt: skip
        created: str | None = None
        for method, path, body, expected in writes:
            test_id = new_test_id()
            status, answer_headers, answer = await send(
                session,
                method,
                url(turnout, path),
                json=body,
                headers={**headers, TEST_ID_HEADER: test_id},
            )
            assert status == expected, answer
            side = answer_headers["x-turnout-backend"]
            other = "legacy" if side == "new" else "new"
            seen_sides.add(side)
            assert await received(session, bases[side], test_id) == [f"{method} {path}"]
            assert await received(session, bases[other], test_id) == []
            if path == "/api/account/orders":
                created, order_side = answer["id"], side
        # The order lives on the side that created it; its DELETE follows the user there.
        test_id = new_test_id()
        path = f"/api/account/orders/{created}"
        status, answer_headers, _ = await send(
            session, "DELETE", url(turnout, path), headers={**headers, TEST_ID_HEADER: test_id}
        )
        assert status == 204 and answer_headers["x-turnout-backend"] == order_side
        assert await received(session, bases[order_side], test_id) == [f"DELETE {path}"]
    assert seen_sides == {"legacy", "new"}


async def test_a_get_new_lacks_falls_back_to_legacy_but_a_post_is_not_replayed(
    start_example_turnout: StartExampleTurnout,
    session: aiohttp.ClientSession,
    legacy_fastapi: str,
    new_nestjs: str,
) -> None:
    turnout = await start_example_turnout()  # account-api: acme-beta targeted to new
    headers = auth("beta-tester", "acme-beta")
    test_id = new_test_id()
    status, answer_headers, body = await send(
        session,
        "GET",
        url(turnout, "/api/account/invoices"),
        headers={**headers, TEST_ID_HEADER: test_id},
    )
    assert status == 200 and isinstance(body, list)
    assert answer_headers["x-turnout-backend"] == "legacy"
    assert answer_headers["x-turnout-fallback"] == "1"
    assert await received(session, new_nestjs, test_id) == ["GET /api/account/invoices"]
    assert await received(session, legacy_fastapi, test_id) == ["GET /api/account/invoices"]

    test_id = new_test_id()
    address = {"label": "work", "line1": "2 Rue X", "city": "Lyon", "postal_code": "69002",
               "country": "FR"}  # fmt: skip
    status, answer_headers, body = await send(
        session,
        "POST",
        url(turnout, "/api/account/addresses"),
        json=address,
        headers={**headers, TEST_ID_HEADER: test_id},
    )
    assert status == 404 and answer_headers["x-turnout-backend"] == "new"  # new's own answer
    assert "x-turnout-fallback" not in answer_headers
    assert await received(session, legacy_fastapi, test_id) == []


async def test_new_killed_mid_test_falls_back_or_gives_the_json_502(
    start_example_turnout: StartExampleTurnout,
    session: aiohttp.ClientSession,
    legacy_fastapi: str,
    restartable_nestjs: ServiceProcess,
) -> None:
    # platform-api without a fallback: its requests show the proxy's own error. The
    # account-api budget (20 % of the flag's requests) would refuse the second of
    # these few fallbacks; the file's triggers, with all of the budget.
    file_fallback = example_config("http://a", "http://b").config.flags["account-api"].fallback
    assert file_fallback is not None
    turnout = await start_example_turnout(
        **{
            "platform-api": {"percent": 100, "fallback": None},
            "account-api": {"fallback": {"on": list(file_fallback.on), "budget_percent": 100}},
        }
    )
    beta, admin = auth("beta-2", "acme-beta"), auth("root", "acme", "admin")
    orders, tenants = url(turnout, "/api/account/orders"), url(turnout, "/api/platform/tenants")
    status, headers, _ = await send(session, "GET", orders, headers=beta)
    assert status == 200 and headers["x-turnout-backend"] == "new"  # pooled connection to new

    restartable_nestjs.kill()
    status, headers, body = await send(session, "GET", orders, headers=beta)
    assert status == 200 and body["items"] == []
    assert headers["x-turnout-backend"] == "legacy" and headers["x-turnout-fallback"] == "1"
    test_id = new_test_id()  # nothing reached new: a write is replayed too
    order = {"items": [{"product_id": "p-003", "quantity": 1}]}
    status, headers, body = await send(
        session, "POST", orders, json=order, headers={**beta, TEST_ID_HEADER: test_id}
    )
    assert status == 201 and headers["x-turnout-backend"] == "legacy"
    assert body["total_cents"] == body["subtotal_cents"] + body["tax_cents"]  # legacy's total
    assert await received(session, legacy_fastapi, test_id) == ["POST /api/account/orders"]
    status, headers, body = await send(session, "GET", tenants, headers=admin)
    assert status == 502 and headers["content-type"].startswith("application/json")
    assert set(body["error"]) == {"code", "message"}

    restartable_nestjs.start()  # back on the same port: new serves again, no ejection
    status, headers, _ = await send(session, "GET", tenants, headers=admin)
    assert status == 200 and headers["x-turnout-backend"] == "new"
