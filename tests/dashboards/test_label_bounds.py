"""The metrics' label sets stay bounded, whatever the traffic: routes and flags are
config names (or ``unmatched``), never raw paths, user ids or arbitrary methods.
Otherwise each distinct URL would become a Prometheus series (and the dashboard's
queries would slow down as the API is used)."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp.plugin import AiohttpServer

from proxy.decision.table import UNMATCHED_FLAG
from tests.conftest import StartTurnout

REQUESTS = 1000
ROUTES = ["/api/users/*", "/api/orders/**"]
ALLOWED = {
    "route": {*ROUTES, "unmatched"},
    "flag": {"users", "orders", UNMATCHED_FLAG},
    "backend": {"legacy", "new"},
    "from_backend": {"legacy", "new"},
    "to_backend": {"legacy", "new"},
    "method": {"GET", "POST", "DELETE", "OTHER"},
}


def _path(index: int) -> str:
    return ("/api/users/u-", "/api/orders/2026/o-", "/static/file-")[index % 3] + str(index)


async def test_labels_stay_bounded_after_a_thousand_distinct_paths(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=404 if request.path.startswith("/static") else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    url = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    turnout = await start_turnout(
        url,
        url,
        flags={"users": {"percent": 50}, "orders": {"percent": 50}},
        routes=[{"path": ROUTES[0], "flag": "users"}, {"path": ROUTES[1], "flag": "orders"}],
    )
    methods = ("GET", "POST", "DELETE", "PROPFIND")  # PROPFIND: counted as OTHER
    async with aiohttp.ClientSession() as session:
        for index in range(REQUESTS):
            proxy = f"http://127.0.0.1:{turnout.proxy_port}{_path(index)}?id={index}"
            headers = {"x-user-id": f"user-{index}"}
            async with session.request(methods[index % 4], proxy, headers=headers) as response:
                await response.read()
        async with session.get(f"http://127.0.0.1:{turnout.admin_port}/metrics") as scraped:
            text = await scraped.text()

    series = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series += 1
            for label, value in sample.labels.items():
                assert "/" not in value or value in ALLOWED["route"], (label, value)
                assert "user-" not in value and "-u-" not in value, (label, value)
                if label in ALLOWED:
                    assert value in ALLOWED[label], (family.name, label, value)
                elif label == "code":
                    assert value.isdigit() and len(value) == 3
    requests_seen = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "turnout_requests"
        for sample in family.samples
        if sample.name == "turnout_requests_total"
    )
    assert requests_seen == REQUESTS
    # routes x backends x methods x codes, plus the fixed families: far below one per path.
    assert series < 400
