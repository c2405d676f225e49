"""Fleet mode end to end: three `turnout serve` processes, one config (each its own
ports), one real redis-server; real backends and real requests through the proxies.

"Within 1 s" is measured from the mutation's 200 to the other replica's /status
showing the change; every other wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from proxy.admin.client import AdminClient, AdminError
from tests.conftest import BASE_CONFIG
from tests.runtime.test_serve_process import free_port, start_serve, wait_ready
from tests.support.backends import sample, scrape
from tests.support.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, imported for pytest

TOKEN = "fleet-token"
LEASE = 2.0  # seconds (TURNOUT_LEADER_LEASE_SECONDS): short, so failover tests are quick
REACH = 1.0  # seconds: a change reaches every replica within this (SPEC)


@dataclass
class Replica:
    name: str
    port: int
    admin: int
    config: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def client(self) -> AdminClient:
        return AdminClient(f"http://127.0.0.1:{self.admin}", TOKEN)

    async def status(self) -> dict[str, Any]:
        return await self.client.status()

    async def percent(self, flag: str = "main") -> float:
        flags = {f["name"]: f for f in (await self.status())["flags"]}
        return float(flags[flag]["percent"])

    async def backend_of_a_request(self) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/x", headers={"x-user-id": "u1"}) as got,
        ):
            assert got.status == 200
            return got.headers["x-turnout-backend"]


Launch = Callable[..., Awaitable[list[Replica]]]


def backend_app(status: int = 200) -> web.Application:
    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"ok": status < 500}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


@pytest.fixture
async def launch(
    aiohttp_server: AiohttpServer,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Launch]:
    """``await launch(3, flags)`` -> three ready replicas sharing ``redis_server``;
    ``admin_ports`` chooses their admin ports, ``failing_new`` sends new to a backend
    that answers every request with a 500."""
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("TURNOUT_LEADER_LEASE_SECONDS", str(LEASE))
    legacy, new = await aiohttp_server(backend_app()), await aiohttp_server(backend_app())
    failing = await aiohttp_server(backend_app(500))
    names = (f"r{n}" for n in itertools.count(1))
    started: list[Replica] = []

    async def run(
        count: int,
        flags: dict[str, Any] | None = None,
        *args: str,
        admin_ports: list[int] | None = None,
        failing_new: bool = False,
    ) -> list[Replica]:
        admins = admin_ports or [free_port() for _ in range(count)]
        assert len(admins) == count
        new_url = str((failing if failing_new else new).make_url(""))
        replicas = [_replica(next(names), flags, admin, new_url) for admin in admins]
        for replica in replicas:
            replica.process = await start_serve(replica.config, *args)
            started.append(replica)
        for replica in replicas:
            assert replica.process is not None
            await wait_ready(replica.admin, replica.process)
        return replicas

    def _replica(name: str, flags: dict[str, Any] | None, admin: int, new_url: str) -> Replica:
        port = free_port()
        data = {
            **BASE_CONFIG,
            "listen": f"127.0.0.1:{port}",
            "admin": {"listen": f"127.0.0.1:{admin}", "token_env": "TURNOUT_ADMIN_TOKEN"},
            "backends": {
                "legacy": {"url": str(legacy.make_url(""))},
                "new": {"url": new_url},
            },
            "state_store": redis_server.url("fleet-test"),
            "flags": flags or {"main": {"percent": 0}, "other": {"percent": 0}},
        }
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(data))
        return Replica(name, port, admin, config)

    yield run
    for replica in started:
        if replica.process is not None and replica.process.returncode is None:
            replica.process.send_signal(signal.SIGTERM)
    for replica in started:
        if replica.process is not None:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(replica.process.wait(), timeout=30)


async def seen_within(replicas: list[Replica], flag: str, percent: float, limit: float) -> float:
    """Seconds until every replica's /status shows ``flag`` at ``percent``; fails after
    ``limit``."""
    start = time.monotonic()
    for replica in replicas:
        while await replica.percent(flag) != percent:
            elapsed = time.monotonic() - start
            assert elapsed < limit, f"{replica.name} still not at {percent}% after {elapsed:.2f}s"
            await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_a_change_on_any_replica_reaches_every_replica_within_a_second(
    launch: Launch,
) -> None:
    a, b, c = await launch(3)
    await a.client.set_percent("main", 30)
    await seen_within([b, c], "main", 30, REACH)
    assert await b.backend_of_a_request() in ("legacy", "new")

    await c.client.rollback_all()
    await seen_within([a, b], "main", 0, REACH)
    await seen_within([a, b], "other", 0, REACH)
    overrides = [(await r.status())["flags"][0]["override"] for r in (a, b)]
    assert all(o is not None and o["reason"] == "rollback" for o in overrides)

    (late,) = await launch(1)  # started after the changes: picks up the current state
    assert await late.percent("main") == 0
    flag = (await late.status())["flags"][0]
    assert flag["override"]["reason"] == "rollback"
    await _wait_for_heartbeats(late, [a, b, c, late])
    shown = await _turnout_status(late)
    assert "fleet: state store up" in shown
    for replica in (a, b, c, late):
        assert f"127.0.0.1:{replica.admin}" in shown


async def _wait_for_heartbeats(replica: Replica, replicas: list[Replica]) -> None:
    """Until ``replica``'s fleet view lists every replica of ``replicas``."""
    wanted = {f"127.0.0.1:{r.admin}" for r in replicas}
    deadline = time.monotonic() + 10
    while not wanted <= {row["admin"] for row in (await replica.status())["fleet"]["replicas"]}:
        assert time.monotonic() < deadline, "not every replica's heartbeat is shown"
        await asyncio.sleep(0.1)


async def _turnout_status(replica: Replica) -> str:
    """`turnout status --admin URL` as a process: its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "status", "--admin", f"http://127.0.0.1:{replica.admin}",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode()


async def test_redis_down_keeps_serving_refuses_changes_and_catches_up(
    launch: Launch, redis_server: RedisServer
) -> None:
    replicas = await launch(3)
    a, b, _ = replicas
    await a.client.set_percent("main", 100)
    await seen_within(replicas, "main", 100, REACH)

    redis_server.stop()
    down = time.monotonic()
    for replica in replicas:
        await _wait_metric(replica, "turnout_state_store_up", 0.0)
    with pytest.raises(AdminError, match=r"503.*state store"):
        await b.client.set_percent("main", 10)
    while time.monotonic() - down < 5.0:  # the outage lasts 5 s; all keep serving
        for replica in replicas:
            assert await replica.backend_of_a_request() == "new"  # the last state: 100%
        await asyncio.sleep(0.2)
    assert [await r.percent() for r in replicas] == [100.0] * 3

    redis_server.start()  # without persistence: it comes back empty
    for replica in replicas:
        await _wait_metric(replica, "turnout_state_store_up", 1.0)
    await b.client.set_percent("main", 20)
    await seen_within(replicas, "main", 20, REACH)


async def _wait_metric(replica: Replica, name: str, value: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while sample(await scrape(replica.admin), name) != value:
        assert time.monotonic() < deadline, f"{replica.name}: {name} not {value} in {timeout}s"
        await asyncio.sleep(0.1)


async def _leader(replicas: list[Replica]) -> str | None:
    """The leader the replicas' fleet views agree on (None while they do not)."""
    seen = {(await r.status())["fleet"]["leader"] for r in replicas}
    return seen.pop() if len(seen) == 1 else None


async def _canary_step(replica: Replica) -> int:
    flag = (await replica.status())["flags"][0]
    return int(flag["canary"]["step"])


async def test_a_killed_leader_is_replaced_within_the_lease_and_the_canary_goes_on(
    launch: Launch,
) -> None:
    canary = {"steps": [5, 10, 20, 30, 40, 50, 60, 100], "interval": "1s", "min_requests": 5}
    replicas = await launch(3, {"main": {"percent": 0, "canary": canary}})
    async with _Traffic(replicas):
        leader_id = None
        deadline = time.monotonic() + 20
        while leader_id is None or await _canary_step(replicas[0]) < 2:
            assert time.monotonic() < deadline, "no leader, or the canary did not step"
            leader_id = await _leader(replicas)
            await asyncio.sleep(0.1)
        (old,) = [r for r in replicas if leader_id.split(":")[1] == str(r.admin)]
        survivors = [r for r in replicas if r is not old]
        assert old.process is not None
        old.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await old.process.wait()
        step = await _canary_step(survivors[0])  # what the old leader last wrote

        new_leader = None
        while new_leader in (None, leader_id):
            took = time.monotonic() - killed
            assert took < LEASE + 0.5, f"no new leader {took:.2f}s after the kill"  # 0.5: slack
            new_leader = await _leader(survivors)
            await asyncio.sleep(0.05)
        assert await _canary_step(survivors[0]) >= step  # not restarted at step 1
        deadline = time.monotonic() + 20
        while await _canary_step(survivors[0]) <= step:  # and the new leader steps it on
            assert time.monotonic() < deadline, f"the canary stayed at step {step}"
            await asyncio.sleep(0.1)


class _Traffic:
    """GETs with varied user ids to every replica until stopped (the canary's numbers)."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> _Traffic:
        self.tasks = [asyncio.create_task(self._loop(r)) for r in self.replicas]
        return self

    async def _loop(self, replica: Replica) -> None:
        users = itertools.count()
        async with aiohttp.ClientSession() as session:
            while True:
                headers = {"x-user-id": f"user-{next(users) % 5000}"}
                with contextlib.suppress(aiohttp.ClientError):  # the killed replica
                    async with session.get(
                        f"http://127.0.0.1:{replica.port}/x", headers=headers
                    ) as response:
                        await response.read()
                if replica.process is not None and replica.process.returncode is not None:
                    return

    async def __aexit__(self, *_: object) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_replica_with_workers_follows_the_fleet_in_every_worker(launch: Launch) -> None:
    (single,) = await launch(1)
    (supervised,) = await launch(1, None, "--workers", "2")
    await single.client.set_percent("main", 100)
    await seen_within([supervised], "main", 100, REACH)
    deadline = time.monotonic() + REACH  # the supervisor pushes it to its workers
    while await supervised.backend_of_a_request() != "new":
        assert time.monotonic() < deadline, "the workers did not get the change"
    # both workers have it (new connections spread over them): every request goes to new
    for _ in range(20):
        assert await supervised.backend_of_a_request() == "new"
    await supervised.client.set_percent("main", 0)  # and its admin API writes to the fleet
    await seen_within([single], "main", 0, REACH)
