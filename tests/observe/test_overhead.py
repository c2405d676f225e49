"""Turnout's own added latency: total time minus the time spent waiting for the backend.

The alert on the proxy's p99 overhead (dashboards/alerts.yaml) reads
``turnout_proxy_overhead_seconds``. A slow backend must not look like a slow proxy.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp.plugin import AiohttpServer

from tests.conftest import StartTurnout

BACKEND_DELAY = 0.3


def _samples(text: str, family: str) -> dict[str, float]:
    """The family's _sum and _count, added up over its label sets."""
    totals: dict[str, float] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        for sample in metric.samples:
            if not sample.name.endswith("_bucket"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


async def test_the_overhead_histogram_leaves_out_the_backends_own_time(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(BACKEND_DELAY)  # the backend's time, not the proxy's
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    backend = await aiohttp_server(app)
    url = str(backend.make_url("")).rstrip("/")
    turnout = await start_turnout(url, url)
    requests = 4
    async with aiohttp.ClientSession() as session:
        for index in range(requests):
            async with session.get(f"http://127.0.0.1:{turnout.proxy_port}/r/{index}") as answer:
                assert answer.status == 200
        async with session.get(f"http://127.0.0.1:{turnout.admin_port}/metrics") as scraped:
            text = await scraped.text()

    total = _samples(text, "turnout_request_duration_seconds")
    assert total["turnout_request_duration_seconds_sum"] >= requests * BACKEND_DELAY
    overhead = _samples(text, "turnout_proxy_overhead_seconds")
    assert overhead["turnout_proxy_overhead_seconds_count"] == requests
    # What is left once the backend's 0.3 s are taken out: the proxy's own share,
    # far below one backend delay even on a busy machine.
    assert 0 < overhead["turnout_proxy_overhead_seconds_sum"] < BACKEND_DELAY
