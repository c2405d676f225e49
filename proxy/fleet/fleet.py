"""One replica's part in a fleet: follow the shared state, hold (or wait for) the
judge's lease, and beat its heart into ``turnout:{name}:replicas`` for the fleet view.

``Fleet`` is what ``Turnout`` (one process) and the ``--workers`` supervisor
start when ``state_store`` is set. Start-up does not wait for Redis: a replica
that cannot reach it serves with the file's percents but is not ready
(``/readyz`` 503) until it has read the shared state once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from typing import Any

import structlog
from redis.exceptions import RedisError

from proxy.config.state_store import StoreAddress
from proxy.control.controller import Controller
from proxy.fleet.follow import OnAdopted, StateFollower, cancel_until_done
from proxy.fleet.lease import LeaderLease, lease_seconds
from proxy.fleet.redis_store import RedisStateStore, text
from proxy.fleet.view import HEARTBEAT_SECONDS, Heartbeat, fleet_view, to_prune

_log = structlog.get_logger("turnout.fleet")


_IN_PROCESS = itertools.count(1)


def replica_id(admin_port: int) -> str:
    """``host:admin-port:pid``: stable for the life of the process, unique in a fleet
    (with an ephemeral admin port, ``:0``, a counter keeps in-process replicas apart)."""
    suffix = f"-{next(_IN_PROCESS)}" if admin_port == 0 else ""
    return f"{socket.gethostname()}:{admin_port}:{os.getpid()}{suffix}"


class Fleet:
    def __init__(self, address: StoreAddress, replica: str, *, judge: bool = True) -> None:
        self.replica = replica
        self.store = RedisStateStore(address, replica)
        self.lease = LeaderLease(self.store, lease_seconds()) if judge else None
        self.admin = ""
        """This replica's admin address, shown in the fleet view (set once bound)."""
        self._replicas_key = address.key("replicas")
        self._follower: StateFollower | None = None
        self._controller: Controller | None = None
        self._heart: asyncio.Task[None] | None = None
        self._last_view: dict[str, Any] | None = None

    def leading(self) -> bool:
        return self.lease is not None and self.lease.held()

    @property
    def synced(self) -> bool:
        return self._follower is not None and self._follower.synced

    async def start(self, controller: Controller, on_adopted: OnAdopted | None = None) -> None:
        """Read the shared state (if Redis answers), try the lease once, then follow."""
        self._controller = controller
        self._follower = StateFollower(self.store, controller, on_adopted)
        if not await self._follower.catch_up():
            _log.error(
                "state_store_unreachable_at_start",
                store=self.store.address.shown,
                message="serving the file's percents, not ready until the shared state is read",
            )
        if self.lease is not None:
            await self.lease.attempt()
            self.lease.start()
        self._follower.start()
        self._heart = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        if self._heart is not None:
            await cancel_until_done(self._heart)
        if self._follower is not None:
            await self._follower.stop()
        if self.lease is not None:
            await self.lease.stop()
        with contextlib.suppress(RedisError, OSError):
            await self.store.client.hdel(self._replicas_key, self.replica)
        await self.store.close()

    def heartbeat(self) -> Heartbeat:
        version = self._controller.version if self._controller is not None else 0
        return Heartbeat(
            self.replica, time.time(), version, self.leading(), self.admin, self.store.up()
        )

    async def _beat_forever(self) -> None:
        while True:
            with contextlib.suppress(RedisError, OSError):  # the follower reports Redis down
                await self._beat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _beat(self) -> None:
        client = self.store.client
        await client.hset(self._replicas_key, self.replica, self.heartbeat().encode())
        records = await client.hgetall(self._replicas_key)
        gone = to_prune(_decoded(records), time.time())
        if gone:
            await client.hdel(self._replicas_key, *gone)

    async def status(self) -> dict[str, Any]:
        """The fleet view, read now; when Redis does not answer, the last one read
        (with this replica's own line up to date) and ``state_store_up`` false."""
        version = self._controller.version if self._controller is not None else 0
        client = self.store.client
        try:
            records = _decoded(await client.hgetall(self._replicas_key))
            holder = await client.get(self.store.leader_key)
        except (RedisError, OSError) as error:
            self.store.unreachable(error)
            view = dict(self._last_view or fleet_view({}, None, self.replica, False, 0, 0))
            view.update(state_store_up=False, state_version=version)
            return view
        records[self.replica] = self.heartbeat().encode()  # this replica: now, not 2 s ago
        leader = text(holder)
        self._last_view = fleet_view(
            records, leader, self.replica, self.store.up(), version, time.time()
        )
        return self._last_view


def _decoded(records: dict[Any, Any]) -> dict[str, bytes]:
    return {
        (key.decode() if isinstance(key, bytes) else str(key)): value
        for key, value in records.items()
    }
