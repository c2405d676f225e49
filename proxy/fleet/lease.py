"""The judge's lease: one replica of a fleet at a time judges the canaries.

``SET turnout:{name}:leader <replica> NX PX <ttl>`` takes the lease when nobody
holds it; the holder renews it every third of the lease with a compare-and-
PEXPIRE script, so a replica can only extend its own lease. The key lives 5/6
of the lease and the others try every 1/6: when the holder dies another replica
takes over within one lease, and resumes the canary from the progress in the
shared state. A renewal that fails or is
refused ends this replica's term at once (``LeaseTerm``), and the canary's
writes are fenced in Redis too (``RedisStateStore.write``), so a paused old
leader that wakes up cannot overwrite the new one's judgements.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping

import structlog
from redis.exceptions import RedisError

from proxy.fleet.follow import cancel_until_done
from proxy.fleet.redis_store import RedisStateStore, text
from proxy.fleet.term import LeaseTerm

_log = structlog.get_logger("turnout.fleet")
LEASE_ENV = "TURNOUT_LEADER_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 10.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """The lease length: ``TURNOUT_LEADER_LEASE_SECONDS`` (at least 0.3), else 10 s."""
    text = environ.get(LEASE_ENV, "")
    try:
        value = float(text) if text else DEFAULT_LEASE_SECONDS
    except ValueError:
        raise ValueError(f"{LEASE_ENV} must be a number of seconds, got {text!r}") from None
    if not value >= 0.3:
        raise ValueError(f"{LEASE_ENV} must be at least 0.3 seconds, got {text!r}")
    return value


class LeaderLease:
    def __init__(
        self,
        store: RedisStateStore,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._client = store.client
        self._key = store.leader_key
        self._me = store.replica
        self._clock = clock
        self.seconds = seconds
        self.term = LeaseTerm(seconds * 5 / 6)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None
        self.holder: str | None = None
        """The leader as last seen in Redis (any replica's), for the fleet view."""

    def held(self) -> bool:
        """Whether this replica may judge now."""
        return self.term.held(self._clock())

    async def attempt(self) -> None:
        """Take the lease if free, renew it if ours; anything else ends our term."""
        sent = self._clock()
        milliseconds = int(self.term.seconds * 1000)
        try:
            if self.held():
                ours = bool(await self._renew(keys=[self._key], args=[self._me, milliseconds]))
            else:
                ours = bool(
                    await self._client.set(self._key, self._me, nx=True, px=milliseconds)
                )
            if not ours:
                self.holder = text(await self._client.get(self._key))
        except (RedisError, OSError) as error:
            self._store.unreachable(error)
            self._lost("state store unreachable")
            return
        if ours:
            self.holder = self._me
            if self.term.granted(sent):
                _log.info("leader_elected", replica=self._me, lease_seconds=self.seconds)
        else:
            self._lost(f"held by {self.holder}")

    def _lost(self, why: str) -> None:
        if self.term.lost():
            _log.warning("leader_lost", replica=self._me, reason=why)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / (3 if self.held() else 6))
            await self.attempt()

    async def stop(self) -> None:
        """Stop renewing and hand the lease back, so another replica need not wait for
        it to expire."""
        if self._task is not None:
            await cancel_until_done(self._task)
            self._task = None
        if self.held():
            self.term.lost()
            with contextlib.suppress(RedisError, OSError):
                await self._release(keys=[self._key], args=[self._me])
