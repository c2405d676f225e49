"""Tests for ``turnout demo``'s parts: sample backends, traffic generator, summary."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from proxy.demo import make_backend_app, start_backend
from proxy.demo.backends import PROFILES, SERVED_BY_HEADER, SIDES, Side
from proxy.demo.runner import load_topology, parse_topology
from proxy.demo.summary import (
    ExtraColumns,
    Sample,
    format_final_summary,
    format_live_line,
    percentile,
    summarize,
    windows,
)
from proxy.demo.traffic import TrafficConfig, TrafficGenerator, plan_request

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 10.0  # seconds; generous bound for anything that must end on its own

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def legacy(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(make_backend_app("legacy"))


@pytest.fixture
async def new(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(make_backend_app("new", orders_error_rate=0.0))


async def _get_json(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == status
    return await resp.json()


@pytest.mark.parametrize("side", SIDES)
async def test_health_and_served_by(aiohttp_client: AiohttpClient, side: Side) -> None:
    client = await aiohttp_client(make_backend_app(side))
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    assert resp.headers[SERVED_BY_HEADER] == side
    missing = await client.get("/nope")
    assert missing.status == 404
    assert missing.headers[SERVED_BY_HEADER] == side


async def test_info_and_items_differ_slightly(legacy: Client, new: Client) -> None:
    old_info = await _get_json(legacy, "/api/public/info")
    new_info = await _get_json(new, "/api/public/info")
    assert old_info["service"] == new_info["service"] == "accounts-api"
    assert old_info["version"] != new_info["version"]
    old_items = (await _get_json(legacy, "/api/items"))["items"]
    new_items = (await _get_json(new, "/api/items"))["items"]
    assert len(old_items) >= 3 and old_items != new_items  # same items, another order
    assert sorted(old_items, key=lambda i: i["id"]) == sorted(new_items, key=lambda i: i["id"])


async def test_user_new_adds_field_and_formats_timestamp(legacy: Client, new: Client) -> None:
    old_user = await _get_json(legacy, "/api/users/42")
    new_user = await _get_json(new, "/api/users/42")
    assert old_user["id"] == new_user["id"] == 42
    assert set(new_user) - set(old_user) == {"locale"}
    assert old_user["created_at"].endswith("+00:00")
    assert new_user["created_at"].endswith(".000Z")
    same_instant = datetime.fromisoformat(old_user["created_at"])
    assert datetime.fromisoformat(new_user["created_at"]) == same_instant


async def test_bad_path_id_is_422_on_legacy_400_on_new(legacy: Client, new: Client) -> None:
    assert "detail" in await _get_json(legacy, "/api/users/abc", status=422)
    assert (await _get_json(new, "/api/users/abc", status=400))["statusCode"] == 400


async def test_create_user_echoes_with_id(legacy: Client, new: Client) -> None:
    for client in (legacy, new):
        resp = await client.post("/api/users", json={"name": "Ada", "team": "core"})
        assert resp.status == 201
        body = await resp.json()
        assert body["name"] == "Ada" and body["team"] == "core"
        assert isinstance(body["id"], int)


@pytest.mark.parametrize("payload", [b'{"name": "broken', b"[1, 2]", b'{"name": 5}'])
async def test_invalid_body_is_422_on_legacy_400_on_new(
    legacy: Client, new: Client, payload: bytes
) -> None:
    headers = {"content-type": "application/json"}
    assert (await legacy.post("/api/users", data=payload, headers=headers)).status == 422
    assert (await new.post("/api/users", data=payload, headers=headers)).status == 400


async def test_orders_same_answer_new_slower(legacy: Client, new: Client) -> None:
    assert await _get_json(legacy, "/api/orders/7") == await _get_json(new, "/api/orders/7")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _get_json(new, "/api/orders/7")
    low, high = PROFILES["new"].orders_delay
    assert (low, high) == (0.002, 0.005)
    assert loop.time() - started >= low


async def test_orders_error_rate_is_configurable(aiohttp_client: AiohttpClient) -> None:
    assert PROFILES["new"].orders_error_rate == 0.005
    assert PROFILES["legacy"].orders_error_rate == 0.0
    failing = await aiohttp_client(make_backend_app("new", orders_error_rate=1.0))
    for order in range(3):
        assert (await failing.get(f"/api/orders/{order}")).status == 500
    with pytest.raises(ValueError):
        make_backend_app("new", orders_error_rate=1.5)


async def test_start_backend_listens_and_cleans_up() -> None:
    runner = await start_backend("new", "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = await reader.read()
        writer.close()
        assert response.startswith(b"HTTP/1.1 200")
        assert b"x-served-by: new" in response.lower()
    finally:
        await runner.cleanup()


def test_plan_request_is_seeded_and_mixed() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TrafficConfig("http://example.com:80")
    with pytest.raises(ValueError, match="rate"):
        TrafficConfig("http://127.0.0.1:1", rate=0)
    config = TrafficConfig("http://127.0.0.1:1", users=20, qa_users=2)
    first = [plan_request(random.Random(7), config) for _ in range(2)]
    assert first[0] == first[1]
    plans = [plan_request(rng := random.Random(3), config)]
    plans += [plan_request(rng, config) for _ in range(999)]
    users = {int(p.headers["x-user-id"].removeprefix("user-")) for p in plans}
    assert users <= set(range(1, 21))
    assert all(("x-tenant-id" in p.headers) == (p.headers["x-user-id"] in ("user-1", "user-2"))
               for p in plans)  # fmt: skip
    methods = [p.method for p in plans]
    assert methods.count("GET") > methods.count("POST") > 0
    for plan in plans:
        if plan.endpoint == "POST /api/users (invalid)":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(plan.body or b"")
        elif plan.method == "POST":
            assert orjson.loads(plan.body or b"")["name"].startswith("User ")


async def test_generator_against_backend_stops_after_duration() -> None:
    runner = await start_backend("legacy", "127.0.0.1", 0)
    try:
        port = runner.addresses[0][1]
        config = TrafficConfig(f"http://127.0.0.1:{port}", rate=100, duration=0.5)
        async with asyncio.timeout(DEADLINE):
            samples = await TrafficGenerator(config).run()
    finally:
        await runner.cleanup()
    assert 10 <= len(samples) <= 60  # 100 req/s for 0.5 s, loosely
    assert {s.status for s in samples} <= {200, 201, 422}
    assert {s.backend for s in samples} == {"missing"}  # no proxy in between
    assert all(s.latency >= 0 and s.t >= 0 for s in samples)


async def _fake_proxy(request: web.Request) -> web.Response:
    """Labels answers like the proxy would, by path, so recording can be checked."""
    side = {"/api/public/info": "new", "/api/items": None}.get(request.path, "legacy")
    headers = {"x-turnout-backend": side} if side else {}
    status = 503 if request.path.startswith("/api/orders/") else 200
    return web.Response(status=status, headers=headers)


async def test_generator_records_backend_header_and_stops_on_event(
    aiohttp_server: AiohttpServer,
) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _fake_proxy)
    server = await aiohttp_server(app)
    stop = asyncio.Event()
    generator = TrafficGenerator(TrafficConfig(str(server.make_url("")), rate=300), stop)
    asyncio.get_running_loop().call_later(0.3, stop.set)
    async with asyncio.timeout(DEADLINE):
        samples = await generator.run()
    assert samples
    by_endpoint = {(s.endpoint, s.backend, s.status) for s in samples}
    expected = {
        "GET /api/public/info": ("new", 200),
        "GET /api/items": ("missing", 200),
        "GET /api/orders/{id}": ("legacy", 503),
        "GET /api/users/{id}": ("legacy", 200),
    }
    for endpoint, backend, status in by_endpoint:
        assert expected.get(endpoint, ("legacy", 200)) == (backend, status)


async def test_generator_records_connection_errors() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = TrafficConfig(f"http://127.0.0.1:{port}", rate=50, duration=0.2)
    async with asyncio.timeout(DEADLINE):
        samples = await TrafficGenerator(config).run()
    assert samples and all(s.status is None and s.backend == "missing" for s in samples)


def _s(backend: str, status: int | None, latency_ms: float, t: float = 0.0) -> Sample:
    return Sample(t=t, endpoint="GET /x", backend=backend, status=status, latency=latency_ms / 1000)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_summarize_shares_errors_percentiles() -> None:
    samples = [_s("legacy", 200, ms) for ms in (1, 2, 3, 4, 5, 6)]
    samples += [_s("legacy", 500, 10)]
    samples += [_s("new", 200, 20), _s("new", 503, 40)]
    samples += [_s("missing", None, 5000)]
    stats = summarize(samples, elapsed=2.0)
    assert stats.requests == 10
    assert stats.rate == 5.0
    assert stats.share("legacy") == 0.7
    assert stats.share("new") == 0.2
    assert stats.share("missing") == 0.1
    legacy, new, missing = (stats.per_backend[b] for b in ("legacy", "new", "missing"))
    assert (legacy.requests, legacy.errors, legacy.p50, legacy.p99) == (7, 1, 0.004, 0.010)
    assert (new.requests, new.errors, new.p50, new.p99) == (2, 1, 0.020, 0.040)
    assert (missing.errors, missing.p50, missing.p99) == (1, None, None)  # no answer, no latency
    assert new.error_rate == 0.5
    assert stats.per_endpoint == {"GET /x": {"legacy": 7, "new": 2, "missing": 1}}
    empty = summarize([], elapsed=0.0)
    assert (empty.requests, empty.rate, empty.share("new"), empty.per_backend["new"].p99) == (
        0, 0.0, 0.0, None,
    )  # fmt: skip


def test_windows_split_by_completion_second() -> None:
    samples = [_s("legacy", 200, 1, t=0.1), _s("new", 200, 1, t=0.9), _s("new", 200, 1, t=2.5)]
    result = windows(samples)
    assert [w.requests for w in result] == [2, 0, 1]
    assert [w.share("new") for w in result] == [0.5, 0.0, 1.0]
    assert windows([]) == []


def test_format_live_line_and_final_summary() -> None:
    samples = [_s("legacy", 200, 2), _s("legacy", 200, 2), _s("legacy", 200, 2)]
    samples += [_s("new", 500, 4)]
    line = format_live_line(3, summarize(samples, elapsed=1.0))
    assert line.startswith("[   3s]    4.0 req/s")
    assert "legacy  75.0% err 0" in line and "new  25.0% err 1" in line
    assert line.endswith("shadow: n/a  canary: n/a")
    assert "no-backend" not in line
    extras = ExtraColumns(shadow_parity=0.987, canary_step="orders-api 5% progressing")
    final = format_final_summary(summarize(samples, elapsed=2.0, extras=extras))
    assert "4 requests, 2.0 req/s" in final
    assert "GET /x" in final and "25.0%" in final
    assert final.rstrip().endswith("shadow: 98.7%  canary: orders-api 5% progressing")


def test_demo_config_topology_and_symlink() -> None:
    packaged = REPO / "proxy" / "demo" / "demo.yaml"
    assert (REPO / "config" / "demo.yaml").resolve() == packaged.resolve()
    topology = load_topology(packaged)
    assert topology.proxy_url == "http://127.0.0.1:18080"
    assert topology.admin_url == "http://127.0.0.1:19901"
    assert topology.backends == {"legacy": ("127.0.0.1", 18000), "new": ("127.0.0.1", 13000)}
    config = yaml.safe_load(packaged.read_text())
    assert {f: v["percent"] for f, v in config["flags"].items()} == {
        "public-api": 100, "user-api": 30, "orders-api": 10,
    }  # fmt: skip
    with pytest.raises(ValueError):
        parse_topology({"listen": "127.0.0.1:1"})


async def test_turnout_demo_runs_end_to_end_and_exits_zero() -> None:
    """`turnout demo --duration 3` as a user runs it: real backends, proxy process, traffic."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "demo",
        "--duration",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    output = stdout.decode()
    assert "Turnout demo summary" in output
    # Where to point Prometheus (and so the dashboard) at the demo's numbers.
    assert "metrics: http://127.0.0.1:19901/metrics" in output
    shares = {
        line.split()[0]: int(line.split()[1])
        for line in output.splitlines()
        if line.startswith(("legacy ", "new "))
    }
    assert shares["legacy"] > 0 and shares["new"] > 0
    # The demo shadows the orders tier: the proxy's parity shows in the summary.
    (final,) = [line for line in output.splitlines() if line.startswith("shadow: ")]
    parity = float(final.split()[1].rstrip("%"))
    assert 50 <= parity <= 100  # most order reads match once format and order are folded
    assert "canary: orders-api 10% progressing" in final  # the demo's canary, at its first step
