"""The dashboard and the alerts against a real Prometheus scraping real Turnouts.

Two Turnouts share a legacy backend and a new one that fails (one request in ten
on items, one in four on checkout) and answers odd ids differently:

- ``turnout serve --workers 2`` (so the supervisor's merged /metrics is what is
  scraped) serves the "items" flag at 50 %: every request shadowed, new's 503s
  fall back to legacy;
- a single-process ``turnout serve`` serves the "checkout" flag under a canary
  that must roll back (the canary judges in one process only: with workers it
  stays inactive).

Prometheus scrapes both admin ports every second and evaluates
dashboards/alerts.yaml (with every ``for:`` cut to 1 s, the only change). Then:
every dashboard query parses, every panel returns data, the error-rate, shadow
and canary alerts fire, and the alerts this traffic gives no reason for stay silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from tests.conftest import BASE_CONFIG
from tests.dashboards.files import (
    ALERTS,
    annotation_queries,
    as_sent,
    dashboard,
    panel_queries,
    panels,
)
from tests.runtime.test_serve_process import free_port, start_serve, wait_ready
from tests.support.prometheus import Prometheus, start_prometheus

__all__ = ["start_prometheus"]  # the fixture, used by name

SILENT_ALERTS = (
    "TurnoutBackendDown",
    "TurnoutNoTrafficToNew",
    "TurnoutConfigReloadFailed",
    "TurnoutWorkersRestarting",
    "TurnoutStateStoreDown",
)
DATA_TIMEOUT = 60.0  # the first sample takes ~6 s; a busy 2-core machine gets ten times that
ITEMS = {
    "percent": 50,
    "shadow": {"percent": 100},
    "fallback": {"on": [503], "methods": ["GET"], "budget_percent": 50},
}
CHECKOUT = {
    "percent": 0,
    "canary": {
        "steps": [50, 100],
        "interval": "2s",
        "min_requests": 5,
        "max_error_rate": "1%",  # new fails 25 % here: the first judged interval fails
        "failures_to_rollback": 1,
    },
}


async def _backend(server: AiohttpServer, name: str) -> str:
    """legacy answers every item. new fails every tenth request of /api/items and every
    fourth of /api/checkout (so that any canary interval of 5 or more requests fails,
    never a step passed by luck), and prices odd ids wrong."""
    served = {"items": 0, "checkout": 0}
    fail_every = {"items": 10, "checkout": 4}

    async def item(request: web.Request) -> web.Response:
        flag = request.match_info["flag"]
        served[flag] += 1
        if name == "new" and served[flag] % fail_every[flag] == 0:
            return web.json_response({"error": "boom"}, status=503)
        number = int(request.match_info["item"])
        price = 10 * number + (1 if name == "new" and number % 2 else 0)  # a shadow mismatch
        return web.json_response({"id": number, "name": f"item {number}", "price": price})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get(r"/api/{flag:items|checkout}/{item:\d+}", item)
    app.router.add_get("/{tail:.*}", health)
    return str((await server(app)).make_url("")).rstrip("/")


def _turnout_config(
    tmp_path: Path, name: str, backends: tuple[str, str], flags: dict[str, Any]
) -> tuple[Path, int, int]:
    """A config serving ``flags``, each on ``/api/<flag>/*``; returns (path, port, admin)."""
    port, admin = free_port(), free_port()
    data = {
        **BASE_CONFIG,
        "listen": f"127.0.0.1:{port}",
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "backends": {"legacy": {"url": backends[0]}, "new": {"url": backends[1]}},
        "flags": flags,
        "routes": [{"path": f"/api/{flag}/*", "flag": flag} for flag in flags],
        "state_file": str(tmp_path / f"{name}-state.json"),
        "discrepancy_log": str(tmp_path / f"{name}-discrepancies.jsonl"),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, port, admin


async def _traffic(workers_port: int, canary_port: int) -> None:
    """Steady traffic to both flags and to unmatched paths, from many users."""
    targets = (
        (workers_port, "/api/items/"),
        (canary_port, "/api/checkout/"),
        (workers_port, "/elsewhere/"),
        (canary_port, "/api/checkout/"),
    )
    sent = 0
    async with aiohttp.ClientSession() as session:
        while True:
            sent += 1
            port, prefix = targets[sent % len(targets)]
            url = f"http://127.0.0.1:{port}{prefix}{sent}"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url, headers={"x-user-id": f"u{sent}"}) as answer:
                    await answer.read()
            await asyncio.sleep(0.01)  # pacing, not synchronisation: ~50 requests/s at most


def _rules_with_short_durations(tmp_path: Path) -> Path:
    """dashboards/alerts.yaml with every ``for:`` cut to 1 s: nothing else changes."""
    text, cuts = re.subn(r"(?m)^(\s+for: )\S+$", r"\g<1>1s", ALERTS.read_text())
    assert cuts >= 11
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    return path


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)


@pytest.fixture
async def scraped_turnout(
    tmp_path: Path, aiohttp_server: AiohttpServer, start_prometheus: Any
) -> AsyncIterator[Prometheus]:
    backends = (await _backend(aiohttp_server, "legacy"), await _backend(aiohttp_server, "new"))
    workers_config, workers_port, workers_admin = _turnout_config(
        tmp_path, "workers", backends, {"items": ITEMS}
    )
    canary_config, canary_port, canary_admin = _turnout_config(
        tmp_path, "canary", backends, {"checkout": CHECKOUT}
    )
    targets = [f"127.0.0.1:{workers_admin}", f"127.0.0.1:{canary_admin}"]
    prometheus = await start_prometheus(targets, _rules_with_short_durations(tmp_path))
    processes = [await start_serve(workers_config, "--workers", "2")]
    traffic: asyncio.Task[None] | None = None
    try:
        processes.append(await start_serve(canary_config))
        await wait_ready(workers_admin, processes[0])
        await wait_ready(canary_admin, processes[1])
        traffic = asyncio.create_task(_traffic(workers_port, canary_port))
        yield prometheus
    finally:
        if traffic is not None:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic
        for process in processes:
            await _stop(process)


async def test_every_panel_query_parses_and_every_panel_fills_with_data(
    scraped_turnout: Prometheus,
) -> None:
    prometheus = scraped_turnout
    await prometheus.wait_for_data('turnout_requests_total{backend="new"}', DATA_TIMEOUT)
    board = dashboard()
    queries = list(panel_queries(board))
    for _, expr in queries:
        await prometheus.wait_for_data(as_sent(expr), DATA_TIMEOUT)
    for _, expr in annotation_queries(board):
        await prometheus.query(as_sent(expr))  # parses; a transition may not have happened
    filled = {title for title, _ in queries}
    assert filled == {panel["title"] for panel in panels(board) if panel["type"] != "row"}


async def test_the_error_rate_and_shadow_alerts_fire_and_the_others_stay_silent(
    scraped_turnout: Prometheus,
) -> None:
    prometheus = scraped_turnout
    status, body = await prometheus.get("/api/v1/rules")
    assert status == 200
    loaded = {rule["name"] for group in body["data"]["groups"] for rule in group["rules"]}
    assert "TurnoutNewErrorRateAboveLegacy" in loaded and "TurnoutBackendDown" in loaded
    await prometheus.wait_for_data(
        'ALERTS{alertname="TurnoutNewErrorRateAboveLegacy", alertstate="firing", flag="items"}',
        DATA_TIMEOUT,
    )
    # Half the shadowed ids are priced differently by new: far above the 5 % threshold.
    await prometheus.wait_for_data(
        'ALERTS{alertname="TurnoutShadowMismatchRate", alertstate="firing", flag="items"}',
        DATA_TIMEOUT,
    )
    # Both backends answer, new gets its share (checkout's percent is 0 once rolled
    # back), no reload, no worker exit: silent, although every ``for:`` is 1 s here.
    assert not await prometheus.query(f'ALERTS{{alertname=~"{"|".join(SILENT_ALERTS)}"}}')


async def test_a_rolled_back_canary_pages_and_shows_on_the_dashboard(
    scraped_turnout: Prometheus,
) -> None:
    prometheus = scraped_turnout
    await prometheus.wait_for_data(
        'turnout_canary_state{flag="checkout", state="rolled_back"} == 1', DATA_TIMEOUT
    )
    await prometheus.wait_for_data(
        'turnout_canary_judgements_total{flag="checkout", result="fail"} > 0', DATA_TIMEOUT
    )
    await prometheus.wait_for_data(
        'ALERTS{alertname="TurnoutCanaryRolledBack", alertstate="firing", flag="checkout"}',
        DATA_TIMEOUT,
    )
    await prometheus.wait_for_data('turnout_flag_percent{flag="checkout"} == 0', DATA_TIMEOUT)
