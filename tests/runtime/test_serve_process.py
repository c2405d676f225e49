"""`turnout serve` and `turnout check` as real processes: workers, drain, exit codes."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp.plugin import AiohttpServer

from tests.conftest import BASE_CONFIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, backend_url: str, **extra: object) -> tuple[Path, int, int]:
    port, admin = free_port(), free_port()
    data = {
        **BASE_CONFIG,
        "listen": f"127.0.0.1:{port}",
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "backends": {"legacy": {"url": backend_url}, "new": {"url": backend_url}},
        "flags": {"main": {"percent": 50}},
        **extra,
    }
    path = tmp_path / "turnout.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, port, admin


async def turnout_process(
    command: str, config: Path, *args: str, stdout: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`python -m proxy COMMAND -c CONFIG ARGS...` as a child process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        command,
        "-c",
        str(config),
        *args,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


async def start_serve(config: Path, *args: str) -> asyncio.subprocess.Process:
    # stdout (JSON logs) is not read by the tests: never let a full pipe block the proxy.
    return await turnout_process("serve", config, *args, stdout=asyncio.subprocess.DEVNULL)


async def wait_ready(admin_port: int, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(150):
            if process.returncode is not None:
                raise AssertionError("turnout serve exited before it was ready")
            try:
                async with session.get(f"http://127.0.0.1:{admin_port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("turnout serve was not ready within 15 s")


@pytest.fixture
async def backend(
    aiohttp_server: AiohttpServer,
) -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def fast(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def slow(_: web.Request) -> web.Response:
        arrived.set()
        await asyncio.wait_for(release.wait(), timeout=10)
        return web.json_response({"slow": True})

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/{tail:.*}", fast)
    server = await aiohttp_server(app)
    yield str(server.make_url("")), arrived, release


def requests_total(metrics_text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "turnout_requests"
        for sample in family.samples
        if sample.name == "turnout_requests_total"
    )


async def test_two_workers_share_the_port_and_metrics_add_up(
    tmp_path: Path, backend: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    config, port, admin = write_config(tmp_path, backend[0])
    process = await start_serve(config, "--workers", "2")
    try:
        await wait_ready(admin, process)
        sent = 300
        # A new connection per request, so SO_REUSEPORT spreads them over both workers.
        for index in range(sent):
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(
                    f"http://127.0.0.1:{port}/x", headers={"x-user-id": f"u{index}"}
                ) as response:
                    assert response.status == 200
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{admin}/metrics") as response:
                assert requests_total(await response.text()) == sent
            async with session.get(f"http://127.0.0.1:{admin}/status") as response:
                flags = (await response.json())["flags"]
        counts = flags[0]["backends"]
        assert counts["legacy"]["requests"] + counts["new"]["requests"] == sent
        assert 0.35 * sent <= counts["new"]["requests"] <= 0.65 * sent
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0


async def test_sigterm_drains_the_request_in_flight_then_exits_zero(
    tmp_path: Path, backend: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    url, arrived, release = backend
    config, port, admin = write_config(tmp_path, url, drain_timeout="10s")
    process = await start_serve(config)
    await wait_ready(admin, process)
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow"))
        await asyncio.wait_for(arrived.wait(), timeout=5)
        process.send_signal(signal.SIGTERM)
        # Draining has begun once the listener refuses new connections.
        await asyncio.wait_for(_until_refused(port), timeout=5)
        assert not in_flight.done()
        release.set()
        response = await asyncio.wait_for(in_flight, timeout=10)
        assert response.status == 200
        assert await response.json() == {"slow": True}
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0


async def _until_refused(port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        writer.close()
        await asyncio.sleep(0.02)


async def test_invalid_config_exits_1_with_every_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("backends:\n  legacy: {url: ftp://x}\nflags: {a: {percent: 140}}\nbogus: 1\n")
    for command in ("serve", "check"):
        process = await turnout_process(command, path)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 1
        errors = stderr.decode()
        assert f"{path}:2: backends.legacy.url" in errors
        assert f"{path}:3: flags.a.percent" in errors
        assert f"{path}:4: bogus" in errors
        assert f"{path}:1: backends" in errors  # `new` is missing


async def test_check_prints_a_summary_for_a_valid_config(tmp_path: Path) -> None:
    config, _, _ = write_config(tmp_path, "http://127.0.0.1:9")
    process = await turnout_process("check", config)
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0
    assert "ok: 2 backends, 1 flag, 1 route" in stdout.decode()
