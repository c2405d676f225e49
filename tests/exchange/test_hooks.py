"""The Exchange's lifecycle points, as a feature's tap sees them, through a real proxy."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.exchange.exchange import Exchange
from proxy.exchange.hooks import ExchangeTap, Outcome
from tests.conftest import StartTurnout


@dataclass
class RecordingTap:
    events: list[tuple[str, object]] = field(default_factory=list)
    request_body: bytearray = field(default_factory=bytearray)
    response_body: bytearray = field(default_factory=bytearray)

    def request_head_sent(self, exchange: Exchange, backend: int, head: bytes) -> None:
        self.events.append(("request_head_sent", backend))

    def request_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        if not self.events or self.events[-1][0] != "request_body":
            self.events.append(("request_body", None))
        self.request_body += data

    def response_head(
        self, exchange: Exchange, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.events.append(("response_head", status))

    def response_body_chunk(self, exchange: Exchange, data: bytes) -> None:
        if self.events[-1][0] != "response_body":
            self.events.append(("response_body", None))
        self.response_body += data

    def finished(self, exchange: Exchange, outcome: Outcome, status: int) -> None:
        self.events.append(("finished", (outcome, status)))


@dataclass
class Factory:
    """Opens a tap for every request, or for none (``sample=False``)."""

    sample: bool = True
    taps: list[RecordingTap] = field(default_factory=list)
    opened: int = 0

    def open(self, exchange: Exchange) -> ExchangeTap | None:
        self.opened += 1
        if not self.sample:
            return None
        tap = RecordingTap()
        self.taps.append(tap)
        return tap


def _app(status: int = 200) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(status=status, body=b"echo:" + body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def test_a_tap_sees_every_lifecycle_point_in_order(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    legacy, new = await aiohttp_server(_app()), await aiohttp_server(_app())
    turnout = await start_turnout(str(legacy.make_url("")), str(new.make_url("")))
    factory = Factory()
    turnout.service.tap_factories = {"main": (factory,)}
    body = b"x" * 300_000  # several chunks each way
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{turnout.proxy_port}/up", data=body) as response,
    ):
        assert response.status == 200
        assert await response.read() == b"echo:" + body
    (tap,) = factory.taps
    assert tap.events == [
        ("request_head_sent", 0),
        ("request_body", None),
        ("response_head", 200),
        ("response_body", None),
        ("finished", ("done", 200)),
    ]
    assert bytes(tap.request_body) == body
    assert bytes(tap.response_body) == b"echo:" + body


async def test_a_fallback_shows_both_attempts_and_ends_failed_only_when_the_client_saw_5xx(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    legacy, new = await aiohttp_server(_app()), await aiohttp_server(_app(status=503))
    turnout = await start_turnout(
        str(legacy.make_url("")),
        str(new.make_url("")),
        flags={"main": {"percent": 100, "fallback": {"on": [503]}}},
    )
    factory = Factory()
    turnout.service.tap_factories = {"main": (factory,)}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{turnout.proxy_port}/x") as response,
    ):
        assert response.status == 200
        assert response.headers["x-turnout-fallback"] == "1"
    (tap,) = factory.taps
    assert tap.events == [
        ("request_head_sent", 1),
        ("response_head", 503),
        ("request_head_sent", 0),
        ("response_head", 200),
        ("response_body", None),
        ("finished", ("done", 200)),
    ]


async def test_unsampled_requests_and_other_flags_get_no_taps(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    legacy, new = await aiohttp_server(_app()), await aiohttp_server(_app())
    turnout = await start_turnout(str(legacy.make_url("")), str(new.make_url("")))
    unsampled, other_flag = Factory(sample=False), Factory()
    turnout.service.tap_factories = {"main": (unsampled,), "other": (other_flag,)}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(f"http://127.0.0.1:{turnout.proxy_port}/x") as response:
                assert response.status == 200
    assert unsampled.opened == 3 and unsampled.taps == []
    assert other_flag.opened == 0
