"""WebSocket upgrades, proxied message by message.

aiohttp's server cannot hand over the raw socket after a 101, so the proxy
speaks WebSocket on both sides: it opens the upstream WebSocket first (so an
unreachable backend still gets a clean JSON 502), then accepts the client's
upgrade with the subprotocol the backend chose, and relays frames both ways
until either side closes. Pings are relayed, not answered locally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import structlog
from aiohttp import WSMsgType, web

from proxy.errors import error_response
from proxy.table import BackendTarget

_log = structlog.get_logger("turnout.websocket")
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "upgrade",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
    }
)


def is_websocket_upgrade(headers: Mapping[str, str]) -> bool:
    upgrade = headers.get("upgrade")
    return upgrade is not None and upgrade.lower() == "websocket"


def new_session() -> aiohttp.ClientSession:
    """The client session for upstream WebSockets: no cookie jar, no decompression."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )


def _upstream_headers(request: web.BaseRequest, remote: str | None) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    prior = request.headers.get("x-forwarded-for")
    client = remote or "unknown"
    headers["X-Forwarded-For"] = f"{prior}, {client}" if prior else client
    headers.setdefault("X-Forwarded-Proto", request.scheme)
    headers["X-Forwarded-Host"] = request.host
    return headers


async def proxy_websocket(
    request: web.BaseRequest,
    target: BackendTarget,
    session: aiohttp.ClientSession,
    extra: tuple[tuple[str, str], ...],
    remote: str | None,
) -> web.StreamResponse:
    """Relay one WebSocket session between the client and ``target``."""
    scheme = "wss" if target.scheme == "https" else "ws"
    url = f"{scheme}://{target.pool.host}:{target.pool.port}{request.raw_path}"
    protocols = [
        p.strip() for p in request.headers.get("sec-websocket-protocol", "").split(",") if p.strip()
    ]
    try:
        upstream = await session.ws_connect(
            url,
            headers=_upstream_headers(request, remote),
            protocols=protocols,
            autoping=False,
            timeout=aiohttp.ClientWSTimeout(ws_close=target.connect_timeout),
            max_msg_size=0,
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        _log.warning("websocket_upstream_failed", backend=target.name, error=str(exc))
        response = error_response(502, "backend_unreachable", f"{target.name} backend: {exc}")
        response.headers.extend(extra)
        return response
    client = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (), autoping=False, max_msg_size=0
    )
    client.headers.extend(extra)
    await client.prepare(request)
    async with upstream:
        await _relay_both_ways(client, upstream)
    return client


async def _relay_both_ways(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    to_upstream = asyncio.create_task(_pump(client, upstream))
    to_client = asyncio.create_task(_pump(upstream, client))
    try:
        await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_upstream, to_client):
            task.cancel()
        await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        if not client.closed:
            await client.close(code=upstream.close_code or aiohttp.WSCloseCode.OK)
        if not upstream.closed:
            await upstream.close(code=client.close_code or aiohttp.WSCloseCode.OK)


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == WSMsgType.PONG:
            await sink.pong(message.data)
        else:
            break
