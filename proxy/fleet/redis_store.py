"""The shared runtime state in Redis (``state_store: redis://...``), redis-py's asyncio client.

Keys (``{name}`` is the deployment's name, a Redis Cluster hash tag):

- ``turnout:{name}:state``, a hash: ``version`` (an integer, +1 per write) and
  ``state`` (the ``encode_state`` JSON).
- ``turnout:{name}:changes``, a pub/sub channel: each write publishes its version.

A write is one Lua script, so the version check, the fencing check, the bump and
the publish happen atomically: the write succeeds only when the stored version
is still the one the change was computed from (else ``VersionConflict``, which
carries the stored state to adopt), and a fenced write (a canary judgement) only
when the leader key still holds this replica's id (else ``NotLeader``).

Every command has a short timeout and no retries of its own: a Redis that does
not answer makes the call fail fast with ``StoreUnavailable`` (the admin API's
503), and the follower (``proxy.fleet.follow``) reconnects on its own schedule.
"""

from __future__ import annotations

import redis.asyncio as redis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.config.state_store import StoreAddress
from proxy.control.state import (
    NotLeader,
    RuntimeState,
    StateFormatError,
    StoreUnavailable,
    VersionConflict,
    decode_state,
    encode_state,
)

_log = structlog.get_logger("turnout.fleet")
COMMAND_TIMEOUT = 1.0

# KEYS: state hash, leader key, changes channel. ARGV: base version, state JSON, fence id
# ('' = not fenced). Returns {status, version, state}: status 1 written, 0 conflict,
# -1 not the leader.
_WRITE = """
local stored = redis.call('HMGET', KEYS[1], 'version', 'state')
local current = tonumber(stored[1]) or 0
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return {-1, current, ''}
end
if current ~= tonumber(ARGV[1]) then
  return {0, current, stored[2] or ''}
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[2])
redis.call('PUBLISH', KEYS[3], version)
return {1, version, ''}
"""


# KEYS: state hash, changes channel. ARGV: version, state JSON. Puts back a state that
# Redis lost (restarted without persistence, flushed): only over an older version.
_RESTORE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
if current >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""


def text(value: bytes | str | None) -> str | None:
    """A Redis reply as text (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def connect(address: StoreAddress) -> redis.Redis:
    """A client that fails fast: one attempt per command, ``COMMAND_TIMEOUT`` each."""
    return redis.Redis.from_url(
        address.url,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


class RedisStateStore:
    """A ``StateBackend`` over Redis, shared by every replica of a deployment."""

    def __init__(self, address: StoreAddress, replica: str) -> None:
        self.address = address
        self.replica = replica
        self.client = connect(address)
        self.state_key = address.key("state")
        self.leader_key = address.key("leader")
        self.channel = address.key("changes")
        self._write = self.client.register_script(_WRITE)
        self._restore = self.client.register_script(_RESTORE)
        self._up = False

    def load(self) -> RuntimeState:
        """Nothing yet: the state is read (``read``) when the fleet starts."""
        return RuntimeState()

    def up(self) -> bool:
        return self._up

    def unreachable(self, error: BaseException) -> StoreUnavailable:
        """Note that Redis failed, and the error the admin API shows for it."""
        if self._up:
            _log.error("state_store_down", store=self.address.shown, error=repr(error))
        self._up = False
        return StoreUnavailable(
            f"the state store {self.address.shown} is unreachable ({type(error).__name__}): "
            "nothing was changed; retry when it is back"
        )

    def reachable(self) -> None:
        if not self._up:
            _log.info("state_store_up", store=self.address.shown)
        self._up = True

    async def read(self) -> tuple[int, RuntimeState]:
        """The stored version and state ((0, empty) before the first write)."""
        try:
            version, raw = await self.client.hmget(self.state_key, ["version", "state"])
        except (RedisError, OSError) as error:
            raise self.unreachable(error) from error
        self.reachable()
        return int(version or 0), self._decode(raw)

    def _decode(self, raw: bytes | str | None) -> RuntimeState:
        if not raw:
            return RuntimeState()
        try:
            return decode_state(raw.encode() if isinstance(raw, str) else raw)
        except StateFormatError as error:  # written by a newer Turnout, or by hand
            _log.error("state_store_corrupt", key=self.state_key, reason=str(error))
            return RuntimeState()

    async def write(self, state: RuntimeState, base: int, *, fenced: bool = False) -> int:
        keys = [self.state_key, self.leader_key, self.channel]
        args: list[bytes | str | int] = [base, encode_state(state), self.replica if fenced else ""]
        try:
            status, version, stored = await self._write(keys=keys, args=args)
        except (RedisError, OSError) as error:
            raise self.unreachable(error) from error
        self.reachable()
        if status == -1:
            raise NotLeader(f"{self.replica} does not hold the judge's lease")
        if status == 0:
            raise VersionConflict(int(version), self._decode(stored))
        return int(version)

    async def restore(self, state: RuntimeState, version: int) -> bool:
        """Put ``state`` back at ``version`` when Redis holds an older version (it lost
        its data): the replica that knows the newest state wins, the others adopt it.
        True when this replica's state was put back."""
        keys = [self.state_key, self.channel]
        try:
            restored = bool(await self._restore(keys=keys, args=[version, encode_state(state)]))
        except (RedisError, OSError) as error:
            raise self.unreachable(error) from error
        if restored:
            _log.error(
                "state_store_lost_state",
                store=self.address.shown,
                message="Redis held an older state than this replica (restarted without "
                "persistence, or flushed): this replica's state was written back",
                version=version,
            )
        return restored

    async def close(self) -> None:
        await self.client.aclose()
