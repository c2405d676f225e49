"""Backend connection pools, and the backend targets the data plane forwards to.

``PoolRegistry`` keeps pools by backend identity, so that a reload that leaves a
backend unchanged keeps its warm connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.config.models import BackendConfig, Backends
from proxy.http.errors import UpstreamConnectError
from proxy.http.upstream import UpstreamConnection


class ConnectionPool:
    """Idle keep-alive connections to one backend, most recently used first.

    Connections idle for longer than ``idle_seconds`` are dropped on the way out
    rather than risk racing the backend's own keep-alive close (uvicorn and
    Node close idle connections after 5 s by default).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        max_idle: int = 512,
        idle_seconds: float = 4.0,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._idle: list[UpstreamConnection] = []
        self.opened = 0

    async def acquire(
        self, connect_timeout: float | None = None
    ) -> tuple[UpstreamConnection, bool]:
        """A ready connection and whether it was reused from the pool."""
        idle = self._idle
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                conn.reused = True
                return conn, True
            conn.close()
        return await self.connect(connect_timeout), False

    async def connect(self, connect_timeout: float | None = None) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            limit = self.connect_timeout if connect_timeout is None else connect_timeout
            async with asyncio.timeout(limit):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(loop), self.host, self.port
                )
        except TimeoutError as exc:
            raise UpstreamConnectError(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise UpstreamConnectError(
                f"connect to {self.host}:{self.port} failed: {exc.strerror or exc}"
            ) from exc
        self.opened += 1
        return protocol

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange, or close it."""
        if conn.reusable and len(self._idle) < self.max_idle:
            conn.headers_done = None
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    @property
    def idle_count(self) -> int:
        return len(self._idle)


@dataclass(frozen=True, slots=True)
class BackendTarget:
    """One backend as the forwarding layer needs it."""

    name: str
    pool: ConnectionPool
    connect_timeout: float
    response_timeout: float
    idle_timeout: float


class PoolRegistry:
    """Backend pools by identity, so that an unchanged backend keeps its connections."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, int, float], ConnectionPool] = {}

    def target(self, name: str, backend: BackendConfig) -> BackendTarget:
        timeouts = backend.timeouts
        key = (name, backend.host, backend.port, timeouts.connect)
        pool = self._pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                backend.host,
                backend.port,
                connect_timeout=timeouts.connect,
                max_idle=backend.max_idle_connections,
            )
            self._pools[key] = pool
        return BackendTarget(
            name=name,
            pool=pool,
            connect_timeout=timeouts.connect,
            response_timeout=timeouts.response,
            idle_timeout=timeouts.idle,
        )

    def targets(self, backends: Backends) -> tuple[BackendTarget, BackendTarget]:
        """The (legacy, new) targets of a config, reusing pools of unchanged backends."""
        return self.target("legacy", backends.legacy), self.target("new", backends.new)

    def retire_unused(self, in_use_targets: Iterable[BackendTarget]) -> None:
        """Close pools that no target in use needs any more (after a reload)."""
        in_use = {id(target.pool) for target in in_use_targets}
        for key, pool in list(self._pools.items()):
            if id(pool) not in in_use:
                pool.close()
                del self._pools[key]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
