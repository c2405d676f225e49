"""The shared state store against a real redis-server: writes, following, conflicts,
fencing, the lease, and an outage (Redis stopped and started again, its data gone)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.config.state_store import parse_state_store
from proxy.control.controller import Controller, apply_mutation
from proxy.control.state import NotLeader, RuntimeState, StoreUnavailable
from proxy.fleet.follow import StateFollower
from proxy.fleet.lease import LeaderLease
from proxy.fleet.redis_store import RedisStateStore
from proxy.http.pool import PoolRegistry
from proxy.observe.stats import Stats
from tests.conftest import make_config, wait_until
from tests.support.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, imported for pytest

FLAGS = {"main": {"percent": 0}, "other": {"percent": 0}}


class Replica:
    """A Controller on a RedisStateStore, with its follower: a replica without sockets
    of its own (the proxy listener is not what is tested here)."""

    def __init__(self, url: str, name: str) -> None:
        self.store = RedisStateStore(parse_state_store(url), name)
        loaded = make_config("http://127.0.0.1:1", "http://127.0.0.1:2", flags=FLAGS)
        self.controller = Controller(loaded, self.store, Stats(), PoolRegistry())
        self.follower = StateFollower(self.store, self.controller)

    def percent(self, flag: str = "main") -> float:
        return self.controller.table.flags[flag].percent

    async def set(self, flag: str, percent: float) -> None:
        await apply_mutation(self.controller, "percent", flag, "test", percent)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Callable[[str], Replica]]:
    started: list[Replica] = []

    def make(name: str) -> Replica:
        replica = Replica(redis_server.url(), name)
        started.append(replica)
        return replica

    yield make
    for replica in started:
        # A replica's shutdown must not hang: redis-py turns a cancel that meets its read
        # timeout into a timeout, and after an outage one cancel() left it running ~1 min.
        stopping = time.monotonic()
        await replica.follower.stop()
        assert time.monotonic() - stopping < 2.0, "the follower did not stop"
        await replica.store.close()


async def test_a_change_on_one_replica_is_applied_by_another_within_a_second(
    replicas: Callable[[str], Replica],
) -> None:
    a, b = replicas("a"), replicas("b")
    for replica in (a, b):
        assert await replica.follower.catch_up()
        replica.follower.start()
    await wait_until(lambda: b.follower.subscribed)
    await a.set("main", 30)
    written = time.monotonic()
    await wait_until(lambda: b.percent() == 30, timeout=1.0)
    assert time.monotonic() - written < 1.0
    assert b.controller.version == a.controller.version == 1


async def test_two_concurrent_sets_on_two_replicas_lose_neither(
    replicas: Callable[[str], Replica],
) -> None:
    a, b = replicas("a"), replicas("b")
    await a.follower.catch_up()
    await b.follower.catch_up()  # both at version 0, neither follows: a real race
    await a.set("main", 40)
    await b.set("other", 60)  # computed from version 0: conflicts, adopts a's, retries
    assert b.percent("main") == 40 and b.percent("other") == 60
    stored_version, stored = await a.store.read()
    assert stored.percents() == {"main": 40.0, "other": 60.0}
    assert stored_version == 2


async def test_a_fenced_write_needs_this_replica_to_hold_the_lease(
    replicas: Callable[[str], Replica],
) -> None:
    a, b = replicas("a"), replicas("b")
    lease_a = LeaderLease(a.store, seconds=30)
    lease_b = LeaderLease(b.store, seconds=30)
    await lease_a.attempt()
    await lease_b.attempt()
    assert lease_a.held() and not lease_b.held() and lease_b.holder == "a"
    with pytest.raises(NotLeader):
        await b.store.write(RuntimeState(), 0, fenced=True)
    assert await a.store.write(RuntimeState(), 0, fenced=True) == 1
    # a paused old leader: its lease expired and b took it; a's judgement is refused
    await a.store.client.set(a.store.leader_key, "b")
    with pytest.raises(NotLeader):
        await a.store.write(RuntimeState(), 1, fenced=True)
    assert (await a.store.read())[0] == 1  # nothing written
    await lease_a.attempt()  # the renewal finds the key is not ours: the term ends
    assert not lease_a.held()


async def test_a_dead_leaders_lease_is_taken_over_within_the_lease_time(
    replicas: Callable[[str], Replica],
) -> None:
    a, b = replicas("a"), replicas("b")
    seconds = 1.2
    lease_a, lease_b = LeaderLease(a.store, seconds), LeaderLease(b.store, seconds)
    await lease_a.attempt()
    lease_b.start()
    try:
        await lease_a.attempt()  # renewed: then a dies (no more renewals, no release)
        died = time.monotonic()
        await wait_until(lease_b.held, timeout=seconds + 1.0)
        took = time.monotonic() - died
        assert took <= seconds + 0.3, took  # 0.3 s: a busy machine's scheduling slack
    finally:
        await lease_b.stop()


async def test_redis_down_refuses_changes_and_the_state_comes_back_with_it(
    redis_server: RedisServer, replicas: Callable[[str], Replica]
) -> None:
    a = replicas("a")
    await a.follower.catch_up()
    a.follower.start()
    await a.set("main", 25)
    redis_server.stop()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await a.set("main", 50)
    assert a.percent() == 25  # nothing applied
    assert not a.store.up()
    redis_server.start()  # no persistence: Redis comes back empty
    await wait_until(lambda: a.store.up(), timeout=5)
    async def restored() -> tuple[int, RuntimeState]:
        return await a.store.read()

    deadline = time.monotonic() + 5
    while (await restored())[1].percents() != {"main": 25.0}:
        assert time.monotonic() < deadline, "the replica's state was not written back"
        await asyncio.sleep(0.05)
    await a.set("main", 50)
    assert a.percent() == 50


class Cable:
    """A TCP forwarder between one replica and Redis that can be unplugged: that
    replica alone loses Redis while the others keep it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.links: list[asyncio.StreamWriter] = []
        self.plugged = True

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.plugged:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links += [writer, up_writer]
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def unplug(self) -> None:
        self.plugged = False
        for writer in self.links:
            writer.close()
        self.links.clear()

    async def close(self) -> None:
        self.unplug()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_a_change_made_while_one_replica_was_cut_off_is_applied_when_it_reconnects(
    redis_server: RedisServer, replicas: Callable[[str], Replica]
) -> None:
    cable = Cable(redis_server.port)
    port = await cable.start()
    try:
        a = replicas("a")
        b = Replica(f"redis://127.0.0.1:{port}/0?name=test", "b")  # b's Redis is behind the cable
        for replica in (a, b):
            await replica.follower.catch_up()
            replica.follower.start()
        await wait_until(lambda: b.follower.subscribed)
        cable.unplug()
        await wait_until(lambda: not b.store.up())
        await a.set("main", 70)  # b cannot see it
        with pytest.raises(StoreUnavailable):
            await b.set("other", 10)
        assert b.percent() == 0
        cable.plugged = True
        await wait_until(lambda: b.percent() == 70, timeout=5)  # no message: the read on reconnect
        assert b.store.up()
        await b.follower.stop()
        await b.store.close()
    finally:
        await cable.close()
