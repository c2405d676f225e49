from __future__ import annotations

import aiohttp
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from tests.conftest import StartTurnout


async def test_plain_get_reaches_legacy_and_is_labelled(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response(
            {"path": request.path_qs, "xff": request.headers.get("X-Forwarded-For")}
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    legacy = await aiohttp_server(app)
    new = await aiohttp_server(app)
    turnout = await start_turnout(str(legacy.make_url("")), str(new.make_url("")))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{turnout.proxy_port}/a/b?x=1") as response:
            assert response.status == 200
            assert response.headers["x-turnout-backend"] == "legacy"
            assert await response.json() == {"path": "/a/b?x=1", "xff": "127.0.0.1"}
