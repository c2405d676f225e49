"""Shadow traffic through a real Turnout to real aiohttp backends.

The legacy backend serves (percent 0); every request of flag `main` is mirrored
to the new one (shadow percent 100) and the answers are compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout, wait_until
from tests.support.backends import unused_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Backend:
    """An aiohttp backend that records what it got (shadow copies apart)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.served: list[tuple[str, bytes]] = []
        self.shadowed: list[tuple[str, bytes]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            seen = self.shadowed if request.headers.get("x-turnout-shadow") == "1" else self.served
            seen.append((request.method, body))
            return await self.handler(request)

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def json_handler(body: Any, status: int = 200) -> Handler:
    async def handle(_: web.Request) -> web.StreamResponse:
        return web.json_response(body() if callable(body) else body, status=status)

    return handle


def shadow_config(**shadow: Any) -> dict[str, Any]:
    return {"main": {"percent": 0, "shadow": {"percent": 100, **shadow}}}


async def start(
    aiohttp_server: AiohttpServer,
    start_turnout: StartTurnout,
    legacy: Handler,
    new: Handler,
    **overrides: Any,
) -> tuple[Turnout, Backend, Backend]:
    legacy_backend, new_backend = Backend(legacy), Backend(new)
    servers = [await aiohttp_server(b.app()) for b in (legacy_backend, new_backend)]
    urls = [str(s.make_url("")) for s in servers]
    overrides.setdefault("flags", shadow_config())
    turnout = await start_turnout(*urls, **overrides)
    return turnout, legacy_backend, new_backend


def results(turnout: Turnout, flag: str = "main") -> dict[str, int]:
    return {
        result: n for (name, result), n in turnout.stats.shadow.items() if name == flag and n
    }


async def compared(turnout: Turnout, count: int) -> dict[str, int]:
    await wait_until(lambda: sum(results(turnout).values()) >= count)
    return results(turnout)


async def get(turnout: Turnout, path: str = "/items", **kwargs: Any) -> aiohttp.ClientResponse:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{turnout.proxy_port}{path}", **kwargs) as response,
    ):
        await response.read()
        return response


async def status(turnout: Turnout) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{turnout.admin_port}/status") as response,
    ):
        document: dict[str, Any] = await response.json()
        return next(flag for flag in document["flags"] if flag["name"] == "main")["shadow"]


async def test_a_differing_field_is_a_mismatch_named_in_status_and_the_log(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, tmp_path: Path
) -> None:
    log = tmp_path / "discrepancies.jsonl"
    turnout, legacy, new = await start(
        aiohttp_server,
        start_turnout,
        json_handler({"items": [{"sku": "a", "price": 10}, {"sku": "b", "price": 20}]}),
        json_handler({"items": [{"sku": "a", "price": 10}, {"sku": "b", "price": 22}]}),
        discrepancy_log=str(log),
    )
    response = await get(turnout)
    assert response.status == 200 and response.headers["x-turnout-backend"] == "legacy"
    assert await compared(turnout, 1) == {"mismatch": 1}
    assert len(legacy.served) == 1 and new.served == [] and len(new.shadowed) == 1
    shadow = await status(turnout)
    assert shadow["parity"] == 0.0 and shadow["mismatch"] == 1
    assert shadow["routes"]["/**"] == [
        {
            "path": "body.items[*].price",
            "count": 1,
            "noise": False,
            "example": {"legacy": 20, "new": 22},
        }
    ]
    await wait_until(lambda: log.exists() and log.read_text().count("\n") == 1)
    record = orjson.loads(log.read_text())
    assert record["flag"] == "main" and record["route"] == "/**" and record["path"] == "/items"
    assert record["status"] == {"legacy": 200, "new": 200}
    assert record["diffs"] == [
        {"path": "body.items[1].price", "legacy": 20, "new": 22, "noise": False}
    ]


async def test_ignored_fields_normalised_noise_and_equivalent_statuses_match(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    def legacy_body() -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "at": "2026-12-02T10:00:00Z", "gen": time.time(), "v": 1}

    def new_body() -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "at": "2026-12-02T10:00:00.000+00:00", "gen": 0, "v": 1}

    compare = {"ignore": ["body.gen"], "normalize": ["uuid", "iso_timestamp"]}
    turnout, _, _ = await start(
        aiohttp_server,
        start_turnout,
        json_handler(legacy_body),
        json_handler(new_body),
        flags=shadow_config(compare=compare),
    )
    for _ in range(3):
        await get(turnout)
    assert await compared(turnout, 3) == {"match": 3}


async def test_fastapi_422_against_nestjs_400_matches_when_declared_equivalent(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, _, _ = await start(
        aiohttp_server,
        start_turnout,
        json_handler({"detail": "bad"}, status=422),
        json_handler({"detail": "bad"}, status=400),
        flags={
            **shadow_config(compare={"same_status": [[400, 422]]}),
            "other": {"percent": 0, "shadow": {"percent": 100}},
        },
        routes=[{"path": "/strict/**", "flag": "other"}, {"path": "/**", "flag": "main"}],
    )
    await get(turnout, "/loose")
    await get(turnout, "/strict/x")
    assert await compared(turnout, 1) == {"match": 1}
    await wait_until(lambda: results(turnout, "other") == {"mismatch": 1})


async def test_writes_are_mirrored_only_when_listed(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    ok = json_handler({"ok": True})
    turnout, legacy, new = await start(
        aiohttp_server,
        start_turnout,
        ok,
        ok,
        flags={
            "main": {"percent": 0, "shadow": {"percent": 100}},
            "writes": {"percent": 0, "shadow": {"percent": 100, "methods": ["GET", "POST"]}},
        },
        routes=[{"path": "/w/**", "flag": "writes"}, {"path": "/**", "flag": "main"}],
    )
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{turnout.proxy_port}"
        for path in ("/r", "/w/x"):
            async with session.post(base + path, data=b"payload") as response:
                assert response.status == 200
        async with session.get(base + "/r") as response:
            assert response.status == 200
    await wait_until(lambda: len(new.shadowed) == 2)
    assert sorted(new.shadowed) == [("GET", b""), ("POST", b"payload")]
    assert len(legacy.served) == 3  # each request once on the serving side, nothing twice


async def test_a_slow_shadow_backend_adds_nothing_to_the_clients_latency(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({"v": 1})

    turnout, _, _ = await start(
        aiohttp_server,
        start_turnout,
        json_handler({"v": 1}),
        slow,
        flags={
            "main": {"percent": 0, "shadow": {"percent": 100, "max_in_flight": 1000}},
            "plain": {"percent": 0},
        },
        routes=[{"path": "/plain/**", "flag": "plain"}, {"path": "/**", "flag": "main"}],
    )
    timings: dict[str, list[float]] = {"/shadowed": [], "/plain/x": []}
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{turnout.proxy_port}"
        for _ in range(200):  # interleaved, so that the machine's noise hits both alike
            for path, seen in timings.items():
                started = time.perf_counter()
                async with session.get(base + path) as response:
                    await response.read()
                seen.append(time.perf_counter() - started)
    p99 = {path: statistics.quantiles(seen, n=100)[98] for path, seen in timings.items()}
    assert p99["/shadowed"] - p99["/plain/x"] < 0.005, p99
    assert turnout.shadow.flags["main"].in_flight > 0  # the shadows were really pending


async def test_a_stuck_shadow_backend_is_capped_and_the_rest_dropped_and_counted(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    release = asyncio.Event()

    async def stuck(_: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"v": 1})

    turnout, _, _ = await start(
        aiohttp_server,
        start_turnout,
        json_handler({"v": 1}),
        stuck,
        flags=shadow_config(max_in_flight=10),
    )
    started = time.monotonic()
    for _ in range(100):
        assert (await get(turnout)).status == 200
    assert time.monotonic() - started < 10  # the primary path did not wait for shadows
    flag = turnout.shadow.flags["main"]
    assert flag.in_flight == 10
    assert results(turnout) == {"dropped": 90}
    shadow = await status(turnout)
    assert shadow["dropped_by_reason"] == {"in_flight": 90}
    release.set()
    assert await compared(turnout, 100) == {"dropped": 90, "match": 10}
    await wait_until(lambda: flag.in_flight == 0)


async def test_a_failing_shadow_backend_is_counted_as_error_and_never_ejected(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    legacy = Backend(json_handler({"v": 1}))
    server = await aiohttp_server(legacy.app())
    url, dead = str(server.make_url("")), f"http://127.0.0.1:{unused_port()}"
    eject_fast = {"consecutive_failures": 1}
    turnout = await start_turnout(
        url,
        dead,
        flags=shadow_config(),
        backends={
            "new": {"url": dead, "timeouts": {"connect": "1s"}, "outlier_detection": eject_fast}
        },
    )
    for _ in range(5):
        assert (await get(turnout)).status == 200
    assert await compared(turnout, 5) == {"error": 5}
    assert turnout.shadow.new_errors("main") == 5  # new's errors, for the canary
    assert turnout.health.backends[1].ejections == 0
    assert turnout.stats.upstream_errors == {}


async def test_the_discrepancy_log_never_contains_secrets(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, tmp_path: Path
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        side = "new" if request.headers.get("x-turnout-shadow") else "legacy"
        return web.json_response(
            {
                "side": side,
                "auth": request.headers.get("authorization"),
                "cookie": request.headers.get("cookie"),
                "password": "hunter2-" + side,
            },
            headers={"set-cookie": f"session=set-by-{side}-0123456789"},
        )

    log = tmp_path / "d.jsonl"
    turnout, _, _ = await start(
        aiohttp_server,
        start_turnout,
        echo,
        echo,
        discrepancy_log=str(log),
        flags=shadow_config(redact=["password"]),
    )
    secret = "Bearer s3cr3t-t0ken-4711"
    await get(turnout, headers={"authorization": secret, "cookie": "sid=cookie-value-98765"})
    await wait_until(lambda: log.exists() and log.read_text().endswith("\n"))
    text = log.read_text()
    assert '"side"' in text and "[redacted]" in text
    for leaked in ("s3cr3t-t0ken-4711", "cookie-value-98765", "hunter2", "0123456789"):
        assert leaked not in text


async def test_calibration_marks_a_random_field_as_noise(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    def random_body() -> dict[str, Any]:
        return {"nonce": uuid.uuid4().hex, "v": 1}

    compare = {"calibrate": {"percent": 100}}
    turnout, _, _ = await start(
        aiohttp_server,
        start_turnout,
        json_handler(random_body),
        json_handler(random_body),
        flags=shadow_config(compare=compare),
    )
    for _ in range(5):
        await get(turnout)
    first = await compared(turnout, 5)
    await wait_until(lambda: turnout.shadow.flags["main"].report.noise.within_total >= 5)
    for _ in range(10):
        await get(turnout)
    after = await compared(turnout, 15)
    assert after.get("match", 0) - first.get("match", 0) == 10  # the nonce no longer counts
    shadow = await status(turnout)
    (nonce,) = shadow["routes"]["/**"]
    assert nonce["path"] == "body.nonce" and nonce["noise"] is True


async def test_a_5_mib_post_is_mirrored_whole_or_dropped_as_too_large(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    ok = json_handler({"ok": True})
    writes = {"percent": 100, "methods": ["POST"]}
    turnout, _, new = await start(
        aiohttp_server,
        start_turnout,
        ok,
        ok,
        flags={
            "small": {"percent": 0, "shadow": writes},
            "large": {"percent": 0, "shadow": {**writes, "max_body_bytes": "8MiB"}},
        },
        routes=[{"path": "/large/**", "flag": "large"}, {"path": "/**", "flag": "small"}],
        limits={"max_body_bytes": "16MiB"},
    )
    body = b"u" * (5 * 1024 * 1024)

    async def chunks() -> Any:
        for start_at in range(0, len(body), 256 * 1024):
            yield body[start_at : start_at + 256 * 1024]

    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{turnout.proxy_port}"
        for path, data in (("/small", body), ("/large/x", body), ("/small/chunked", chunks())):
            async with session.post(base + path, data=data) as response:
                assert response.status == 200
    await wait_until(lambda: results(turnout, "large") == {"match": 1})
    assert new.shadowed == [("POST", body)]
    assert results(turnout, "small") == {"dropped": 2}
    assert turnout.shadow.flags["small"].report.dropped == {"body_too_large": 2}
