"""Follow the shared state: every replica applies another's change within a second.

A pub/sub subscription to the changes channel wakes the follower at each write;
it then reads the state and adopts it when its version is newer than the one it
has. A read every ``STATE_POLL_SECONDS`` is the safety net for a lost message
(pub/sub delivers at most once). When Redis is unreachable the replica keeps the
state it has, retries every ``RETRY_SECONDS``, and on reconnecting reads the
state first: what was written meanwhile is applied then. A Redis that comes back
with an older state than the replica's (it lost its data) gets the replica's
state written back (``RedisStateStore.restore``), so an outage loses no change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from redis.exceptions import RedisError

from proxy.control.controller import Controller
from proxy.control.state import StoreUnavailable
from proxy.fleet.redis_store import RedisStateStore

_log = structlog.get_logger("turnout.fleet")
STATE_POLL_SECONDS = 2.0
RETRY_SECONDS = 0.5

OnAdopted = Callable[[], Awaitable[None]]


async def cancel_until_done(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for its end, cancelling again as long as it runs.

    redis-py reads replies under a timeout; a cancellation that arrives as that
    timeout fires is turned into a timeout and lost (the client's call then simply
    returns), so one ``cancel()`` may not stop a loop that talks to Redis."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


class StateFollower:
    def __init__(
        self, store: RedisStateStore, controller: Controller, on_adopted: OnAdopted | None = None
    ) -> None:
        self._store = store
        self._controller = controller
        self._on_adopted = on_adopted
        self._task: asyncio.Task[None] | None = None
        self.synced = False
        """True once the state was read at least once (a replica is ready only then)."""
        self.subscribed = False
        """True while subscribed to the changes channel (a change reaches us at once)."""

    async def catch_up(self) -> bool:
        """Read the stored state and adopt it if newer. False when Redis is unreachable."""
        try:
            version, state = await self._store.read()
            if version < self._controller.version:
                await self._store.restore(self._controller.state, self._controller.version)
                return True
        except StoreUnavailable:
            return False
        self.synced = True
        if self._controller.adopt(state, version):
            _log.info("state_adopted", version=version, overrides=state.percents())
            if self._on_adopted is not None:
                await self._on_adopted()
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except (RedisError, OSError) as error:
                self._store.unreachable(error)
            except Exception:  # a bug here must not stop the following for good
                _log.exception("state_follow_failed")
            await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        """Subscribe, read once (what changed before the subscription), then read on
        each message and at least every ``STATE_POLL_SECONDS``; raises when Redis fails."""
        pubsub = self._store.client.pubsub()
        try:
            await pubsub.subscribe(self._store.channel)
            if not await self.catch_up():
                return
            self.subscribed = True
            while True:
                await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=STATE_POLL_SECONDS
                )
                if not await self.catch_up():
                    return
        finally:
            self.subscribed = False
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
