"""The admin listener (SPEC §8): read-only endpoints for now.

It is a separate aiohttp Application on its own port (loopback by default),
so a scrape or a status call never competes with the proxy's hot path for a
route lookup. All data comes from a ``Control`` source, which is the local
process with one worker and the supervisor's merged view with several.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from aiohttp import web

from proxy.metrics import CONTENT_TYPE, ControlState, render
from proxy.stats import Snapshot
from proxy.status import status_document
from proxy.table import RoutingTable


class Control(Protocol):
    """What the admin API reads: the active table, counters and readiness."""

    @property
    def table(self) -> RoutingTable: ...

    async def snapshot(self) -> Snapshot: ...

    def control_state(self) -> ControlState: ...

    def ready(self) -> bool: ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2),
        status=status,
        content_type="application/json",
    )


def admin_app(control: Control) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = render(await control.snapshot(), control.control_state())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        if control.ready():
            return _json({"status": "ready"})
        return _json({"status": "not_ready"}, status=503)

    async def status(_: web.Request) -> web.Response:
        return _json(status_document(control.table, await control.snapshot()))

    async def config(_: web.Request) -> web.Response:
        table = control.table
        return _json({"hash": table.config_hash, "config": table.config.model_dump(mode="json")})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/config", config)
    return app


async def start_admin(control: Control, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the admin listener; returns its runner and bound port."""
    runner = web.AppRunner(admin_app(control), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
