"""Live control (SPEC §6, §8): reloads, admin mutations, overrides that survive restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.config.loader import read_config
from proxy.runtime.app import Turnout
from tests.conftest import BASE_CONFIG
from tests.runtime.test_serve_process import start_serve, wait_ready, write_config
from tests.support.backends import sample, scrape

TOKEN = "s3cret-token"


@pytest.fixture
async def backend_urls(aiohttp_server: AiohttpServer) -> tuple[str, str]:
    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    legacy, new = await aiohttp_server(app), await aiohttp_server(app)
    return str(legacy.make_url("")), str(new.make_url(""))


def config_text(urls: tuple[str, str], percent: float, **extra: Any) -> str:
    data = {
        **BASE_CONFIG,
        "backends": {"legacy": {"url": urls[0]}, "new": {"url": urls[1]}},
        "flags": {"main": {"percent": percent}},
        **extra,
    }
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
async def turnouts() -> AsyncIterator[list[Turnout]]:
    started: list[Turnout] = []
    yield started
    for turnout in started:
        await turnout.stop()


async def run_config(tmp_path: Path, text: str, started: list[Turnout]) -> tuple[Path, Turnout]:
    """Write ``text`` as the config file and start a Turnout on it."""
    path = tmp_path / "turnout.yaml"
    path.write_text(text)
    return path, await run(path, started)


async def run(path: Path, started: list[Turnout], *, watch: bool = False) -> Turnout:
    turnout = Turnout(read_config(str(path)))
    await turnout.start(watch=watch)
    started.append(turnout)
    return turnout


async def side(turnout: Turnout, session: aiohttp.ClientSession, user: str = "u1") -> str:
    url = f"http://127.0.0.1:{turnout.proxy_port}/api/x"
    async with session.get(url, headers={"x-user-id": user}) as response:
        assert response.status == 200
        return response.headers["x-turnout-backend"]


async def admin_post(
    turnout: Turnout, path: str, token: str | None = TOKEN, json: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"http://127.0.0.1:{turnout.admin_port}{path}", headers=headers, json=json
        ) as response:
            return response.status, await response.json(content_type=None)


def write_serve_config(
    tmp_path: Path, urls: tuple[str, str], *, percent: float
) -> tuple[Path, int, int]:
    """A config for `turnout serve` on free ports: flag `main` at ``percent``."""
    path, port, admin = write_config(tmp_path, urls[0])
    data = yaml.safe_load(path.read_text())
    data["backends"]["new"]["url"] = urls[1]
    data["flags"]["main"]["percent"] = percent
    path.write_text(yaml.safe_dump(data))
    return path, port, admin


async def set_percent_over_admin(admin: int, percent: float) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"http://127.0.0.1:{admin}/flags/main/percent",
            json={"percent": percent},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            return response.status


async def test_configmap_symlink_swap_is_picked_up_within_2s(
    tmp_path: Path, backend_urls: tuple[str, str], turnouts: list[Turnout]
) -> None:
    first, second = tmp_path / "..2026_01_01_a", tmp_path / "..2026_01_01_b"
    first.mkdir()
    (first / "config.yaml").write_text(config_text(backend_urls, 0))
    os.symlink(first.name, tmp_path / "..data")
    os.symlink("..data/config.yaml", tmp_path / "config.yaml")
    turnout = await run(tmp_path / "config.yaml", turnouts, watch=True)
    async with aiohttp.ClientSession() as session:
        assert await side(turnout, session) == "legacy"
        second.mkdir()
        (second / "config.yaml").write_text(config_text(backend_urls, 100))
        os.symlink(second.name, tmp_path / "..data_tmp")
        swapped = time.monotonic()
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # Kubernetes' atomic swap
        while await side(turnout, session) != "new":
            assert time.monotonic() - swapped < 2.0, "the swap was not picked up within 2 s"
            await asyncio.sleep(0.05)
    assert turnout.controller.reloads == {"success": 1, "failure": 0}  # the swap, once


async def test_sighup_reloads_a_serving_process(
    tmp_path: Path, backend_urls: tuple[str, str]
) -> None:
    path, _port, admin = write_serve_config(tmp_path, backend_urls, percent=10)
    process = await start_serve(path)
    try:
        await wait_ready(admin, process)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{admin}/config") as response:
                before = (await response.json())["hash"]
            # Same size, same inode, same mtime: only the signal can tell the process.
            stat = path.stat()
            path.write_text(path.read_text().replace("percent: 10", "percent: 90"))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while True:
                async with session.get(f"http://127.0.0.1:{admin}/config") as response:
                    document = await response.json()
                if document["hash"] != before:
                    break
                assert time.monotonic() < deadline, "SIGHUP did not reload within 5 s"
                await asyncio.sleep(0.05)
        assert document["config"]["flags"]["main"]["percent"] == 90
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0


async def test_100_reloads_valid_and_invalid_under_traffic_fail_no_request(
    tmp_path: Path, backend_urls: tuple[str, str], turnouts: list[Turnout]
) -> None:
    path, turnout = await run_config(tmp_path, config_text(backend_urls, 50), turnouts)
    stop = asyncio.Event()
    outcomes: list[int] = []

    async def client(index: int) -> None:
        async with aiohttp.ClientSession() as session:
            user = 0
            while not stop.is_set():
                user += 1
                url = f"http://127.0.0.1:{turnout.proxy_port}/api/{index}"
                async with session.get(url, headers={"x-user-id": f"{index}-{user}"}) as reply:
                    outcomes.append(reply.status)

    clients = [asyncio.create_task(client(i)) for i in range(4)]
    valid_hash = turnout.table.config_hash
    for index in range(100):
        if index % 2:
            path.write_text("flags: {main: {percent: 400}}\nbogus: true\n")
            assert not await turnout.reload()
            assert turnout.table.config_hash == valid_hash  # the old config keeps serving
        else:
            path.write_text(config_text(backend_urls, index % 100))
            assert await turnout.reload()
            valid_hash = turnout.table.config_hash
        await asyncio.sleep(0.01)  # let the clients run between reloads (pacing, not sync)
    stop.set()
    await asyncio.gather(*clients)
    assert len(outcomes) > 100
    assert set(outcomes) == {200}
    text = await scrape(turnout.admin_port)
    assert sample(text, "turnout_config_reloads_total", result="failure") == 50
    assert sample(text, "turnout_config_reloads_total", result="success") == 50


async def test_the_start_up_load_is_not_counted_as_a_reload(
    tmp_path: Path, backend_urls: tuple[str, str], turnouts: list[Turnout]
) -> None:
    started = time.time()
    _, turnout = await run_config(tmp_path, config_text(backend_urls, 50), turnouts)
    text = await scrape(turnout.admin_port)
    assert sample(text, "turnout_config_reloads_total", result="success") == 0
    assert sample(text, "turnout_config_reloads_total", result="failure") == 0
    # The config in use was loaded successfully at start: the timestamp says when.
    loaded_at = sample(text, "turnout_config_last_reload_success_timestamp_seconds")
    assert loaded_at is not None and started - 1 <= loaded_at <= time.time() + 1
    assert await turnout.reload()
    text = await scrape(turnout.admin_port)
    assert sample(text, "turnout_config_reloads_total", result="success") == 1


async def test_mutations_need_the_token_and_gets_change_nothing(
    tmp_path: Path,
    backend_urls: tuple[str, str],
    turnouts: list[Turnout],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "turnout.yaml"
    path.write_text(config_text(backend_urls, 10))
    monkeypatch.delenv("TURNOUT_ADMIN_TOKEN", raising=False)
    turnout = await run(path, turnouts)
    status, body = await admin_post(turnout, "/flags/main/percent", json={"percent": 50})
    assert status == 403 and body["error"]["code"] == "no_admin_token"
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    for token in (None, "wrong", TOKEN + "x"):
        status, body = await admin_post(turnout, "/rollback", token=token)
        assert status == 401, token
    async with aiohttp.ClientSession() as session:
        for path_ in ("/flags/main/percent", "/flags/main/rollback", "/rollback"):
            async with session.get(f"http://127.0.0.1:{turnout.admin_port}{path_}") as response:
                assert response.status == 405
    assert turnout.table.flags["main"].percent == 10
    assert turnout.controller.state.overrides == {}
    status, body = await admin_post(turnout, "/flags/nope/rollback")
    assert status == 404 and body["error"]["code"] == "unknown_flag"
    status, body = await admin_post(turnout, "/flags/main/percent", json={"percent": 140})
    assert status == 400
    status, body = await admin_post(turnout, "/flags/main/percent", json={"percent": "25%"})
    assert status == 200 and body["before"] == 10 and body["after"] == 25
    assert turnout.table.flags["main"].percent == 25


async def test_rollback_survives_a_restart_and_resume_hands_back_to_the_file(
    tmp_path: Path,
    backend_urls: tuple[str, str],
    turnouts: list[Turnout],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    path = tmp_path / "turnout.yaml"
    state_file = tmp_path / "state" / "turnout-state.json"
    state_file.parent.mkdir()
    path.write_text(config_text(backend_urls, 100, state_file=str(state_file)))
    first = await run(path, turnouts)
    async with aiohttp.ClientSession() as session:
        assert await side(first, session) == "new"
        status, _ = await admin_post(first, "/flags/main/rollback")
        assert status == 200
        assert await side(first, session) == "legacy"
        await first.stop()
        turnouts.remove(first)
        second = await run(path, turnouts)  # a restart: the file still says 100
        assert await side(second, session) == "legacy"
        async with session.get(f"http://127.0.0.1:{second.admin_port}/status") as response:
            flag = (await response.json())["flags"][0]
        assert flag["phase"] == "rolled_back" and flag["file_percent"] == 100
        assert flag["override"]["reason"] == "rollback" and flag["override"]["by"] == "127.0.0.1"
        status, body = await admin_post(second, "/flags/main/resume")
        assert status == 200 and body["after"] == 100
        assert await side(second, session) == "new"
        # A reload keeps an override and a resume keeps following the file.
        status, _ = await admin_post(second, "/flags/main/percent", json={"percent": 0})
        assert status == 200
        path.write_text(config_text(backend_urls, 100, state_file=str(state_file)) + "\n")
        assert await second.reload()
        assert await side(second, session) == "legacy"


async def test_a_reload_keeps_pools_of_unchanged_backends(
    tmp_path: Path, backend_urls: tuple[str, str], turnouts: list[Turnout]
) -> None:
    path, turnout = await run_config(tmp_path, config_text(backend_urls, 50), turnouts)
    async with aiohttp.ClientSession() as session:
        for user in range(20):
            await side(turnout, session, f"user-{user}")
    legacy_pool, new_pool = (target.pool for target in turnout.table.backends)
    opened = (legacy_pool.opened, new_pool.opened)
    assert legacy_pool.idle_count > 0
    path.write_text(config_text(backend_urls, 70, request_timeout="30s"))
    assert await turnout.reload()
    assert tuple(target.pool for target in turnout.table.backends) == (legacy_pool, new_pool)
    async with aiohttp.ClientSession() as session:
        for user in range(20):
            await side(turnout, session, f"user-{user}")
    assert (legacy_pool.opened, new_pool.opened) == opened  # reused, none reopened


async def test_runtime_change_reaches_every_worker(
    tmp_path: Path, backend_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    path, port, admin = write_serve_config(tmp_path, backend_urls, percent=0)
    process = await start_serve(path, "--workers", "2")
    try:
        await wait_ready(admin, process)
        assert await set_percent_over_admin(admin, 100) == 200
        assert await sides_of_new_connections(port, users=60) == {"new"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0


async def is_ready(admin: int) -> bool:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{admin}/readyz") as response:
            return response.status == 200


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


async def sides_of_new_connections(port: int, users: int = 40) -> set[str]:
    sides = set()
    for user in range(users):  # a new connection each: SO_REUSEPORT spreads them
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(
                f"http://127.0.0.1:{port}/x", headers={"x-user-id": f"u{user}"}
            ) as response:
                sides.add(response.headers["x-turnout-backend"])
    return sides


async def test_a_restarted_worker_gets_the_runtime_state_without_a_state_file(
    tmp_path: Path, backend_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    path, port, admin = write_serve_config(tmp_path, backend_urls, percent=0)
    process = await start_serve(path, "--workers", "2")
    try:
        await wait_ready(admin, process)
        assert await set_percent_over_admin(admin, 100) == 200
        before = children(process.pid)
        os.kill(min(before), signal.SIGKILL)
        deadline = time.monotonic() + 15
        # Ready again means the replacement listens (its socket file is new).
        while children(process.pid) == before or not await is_ready(admin):
            assert time.monotonic() < deadline, "the worker was not replaced"
            await asyncio.sleep(0.05)
        while await sides_of_new_connections(port) != {"new"}:
            assert time.monotonic() < deadline, "the restarted worker did not get the state"
            await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
