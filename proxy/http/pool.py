"""Backend connection pools, and the backend targets the data plane forwards to.

``PoolRegistry`` keeps pools by backend identity, so that a reload that leaves a
backend unchanged keeps its warm connections. A pool speaks TLS to an
``https://`` backend with one ``SSLContext`` built when the pool is made, and
caps the connections in use with a ``ConnectionGate`` (``max_connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from proxy.config.models import BackendConfig, Backends
from proxy.config.tls import BackendTls, client_context
from proxy.http.errors import UpstreamConnectError, UpstreamOverloaded
from proxy.http.upstream import UpstreamConnection

_log = structlog.get_logger("turnout.pool")
_P = TypeVar("_P", bound=asyncio.BaseProtocol)


@dataclass(frozen=True, slots=True)
class TlsClient:
    """How a pool speaks TLS to its backend: the context, and the name it verifies."""

    context: ssl.SSLContext
    server_name: str

    @classmethod
    def for_backend(cls, backend: BackendConfig) -> TlsClient | None:
        """``None`` for an ``http://`` backend; reads the CA and client files."""
        if backend.scheme != "https":
            return None
        tls = backend.tls
        name = tls.server_name if tls is not None and tls.server_name else backend.host
        return cls(client_context(tls), name)


class ConnectionGate:
    """At most ``limit`` connections in use or being opened; the others wait, first come
    first served.

    Each slot taken (``try_enter`` or ``wait``) is given back by exactly one ``leave``.
    A slot given back while someone waits passes straight to the first waiter, so a
    newcomer cannot overtake the queue.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_enter(self) -> bool:
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return True
        return False

    async def wait(self) -> None:
        """Wait for a slot (the caller bounds the wait; a cancelled wait holds none)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot just as the wait ended: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):  # leave() may have dropped it already
                    self._waiters.remove(waiter)
            raise

    def leave(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; in_use stays
                return
        self.in_use -= 1


class PooledConnection(UpstreamConnection):
    """A connection that gives its pool slot back exactly once: when released to the
    pool, when closed by the proxy, or when the backend closes it, whichever comes first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: ConnectionGate) -> None:
        self._gate = gate
        self.holds_slot = False
        super().__init__(loop)

    def free_slot(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self._gate.leave()

    def close(self, *, flush: bool = False) -> None:
        super().close(flush=flush)
        self.free_slot()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.free_slot()


class ConnectionPool:
    """Idle keep-alive connections to one backend, most recently used first, and the cap
    on the connections in use.

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
        max_connections: int = 1024,
        tls: TlsClient | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self.tls = tls
        self._gate = ConnectionGate(max_connections)
        self._idle: list[PooledConnection] = []
        self._closed = False
        self.opened = 0

    async def acquire(
        self, connect_timeout: float | None = None, *, fresh: bool = False
    ) -> tuple[UpstreamConnection, bool]:
        """A ready connection and whether it was reused from the pool (never with
        ``fresh``, which opens a new one: the retry after a stale pooled connection).

        At ``max_connections`` this waits for a connection to come free, up to the
        connect timeout (then ``UpstreamOverloaded``); connecting has its own.
        """
        limit = self.connect_timeout if connect_timeout is None else connect_timeout
        gate = self._gate
        if not gate.try_enter():
            try:
                async with asyncio.timeout(limit):
                    await gate.wait()
            except TimeoutError:
                raise UpstreamOverloaded(
                    f"all {gate.limit} connections to {self.host}:{self.port} are in use "
                    f"(max_connections); none came free within {limit:g}s"
                ) from None
        try:
            conn = None if fresh else self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._open(limit)
        except BaseException:
            gate.leave()
            raise
        conn.holds_slot = True
        return conn, reused

    def _take_idle(self) -> PooledConnection | None:
        idle = self._idle
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def connect(self, connect_timeout: float | None = None) -> UpstreamConnection:
        """A new connection outside the pool and its cap (upgrades, health checks)."""
        limit = self.connect_timeout if connect_timeout is None else connect_timeout
        return await self._open(limit)

    async def _open(self, limit: float) -> PooledConnection:
        loop = asyncio.get_running_loop()
        gate = self._gate
        return await self.open_protocol(lambda: PooledConnection(loop, gate), limit)

    async def open_protocol(self, factory: Callable[[], _P], limit: float) -> _P:
        """A new connection to the backend driven by ``factory()``'s protocol, outside
        the pool (TLS, timeouts and errors as for the pool's own)."""
        loop = asyncio.get_running_loop()
        tls = self.tls
        try:
            async with asyncio.timeout(limit):
                _, protocol = await loop.create_connection(
                    factory,
                    self.host,
                    self.port,
                    ssl=tls.context if tls is not None else None,
                    server_hostname=tls.server_name if tls is not None else None,
                )
        except TimeoutError as exc:
            raise UpstreamConnectError(f"connect to {self.host}:{self.port} timed out") from exc
        except ssl.SSLError as exc:
            raise self._tls_failed(exc) from exc
        except OSError as exc:
            raise UpstreamConnectError(
                f"connect to {self.host}:{self.port} failed: {exc.strerror or exc}"
            ) from exc
        self.opened += 1
        return protocol

    def _tls_failed(self, exc: ssl.SSLError) -> UpstreamConnectError:
        """The error (and the log line) for a TLS handshake that failed."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = f"certificate did not verify: {exc.verify_message}"
        elif exc.reason == "WRONG_VERSION_NUMBER":
            why = "the backend does not speak TLS (is it http://?)"
        else:
            why = str(exc.reason or exc)
        message = f"TLS handshake with {self.host}:{self.port} failed: {why}"
        server_name = self.tls.server_name if self.tls is not None else None
        _log.warning(
            "backend_tls_failed",
            address=f"{self.host}:{self.port}",
            server_name=server_name,
            error=message,
        )
        return UpstreamConnectError(message)

    def take_slot(self) -> bool:
        """Take one of the ``max_connections`` slots if one is free now (never waits);
        give it back with ``give_slot``. For connections kept outside the pool."""
        return self._gate.try_enter()

    def give_slot(self) -> None:
        self._gate.leave()

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange, or close it; frees its slot."""
        if conn.reusable and not self._closed and len(self._idle) < self.max_idle:
            assert isinstance(conn, PooledConnection)
            conn.headers_done = None
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            conn.free_slot()
        else:
            conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when released."""
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def in_use(self) -> int:
        """Connections in use or being opened (what ``max_connections`` caps)."""
        return self._gate.in_use

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection to come free."""
        return self._gate.waiting


@dataclass(frozen=True, slots=True)
class BackendTarget:
    """One backend as the forwarding layer needs it."""

    name: str
    pool: ConnectionPool
    connect_timeout: float
    response_timeout: float
    idle_timeout: float


def _pool_key(name: str, backend: BackendConfig) -> tuple[object, ...]:
    """What a pool depends on: a reload that changes any of it gets a new pool.

    The TLS files' contents are part of it, so that a reload after a certificate
    was renewed in place (same path) picks the new one up.
    """
    return (
        name,
        backend.url,
        backend.timeouts.connect,
        backend.max_idle_connections,
        backend.max_connections,
        backend.tls,
        _file_digests(backend.tls),
    )


def _file_digests(tls: BackendTls | None) -> tuple[bytes, ...]:
    digests = []
    for path in tls.files() if tls is not None else ():
        try:
            with open(path, "rb") as handle:
                digests.append(hashlib.sha256(handle.read()).digest())
        except OSError:
            digests.append(b"")  # gone since the config was loaded: building the context says so
    return tuple(digests)


class PoolRegistry:
    """Backend pools by identity, so that an unchanged backend keeps its connections."""

    def __init__(self) -> None:
        self._pools: dict[tuple[object, ...], ConnectionPool] = {}

    def target(self, name: str, backend: BackendConfig) -> BackendTarget:
        timeouts = backend.timeouts
        key = _pool_key(name, backend)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._new_pool(name, backend)
        return BackendTarget(
            name=name,
            pool=pool,
            connect_timeout=timeouts.connect,
            response_timeout=timeouts.response,
            idle_timeout=timeouts.idle,
        )

    @staticmethod
    def _new_pool(name: str, backend: BackendConfig) -> ConnectionPool:
        if backend.tls is not None and not backend.tls.verify:
            _log.warning(
                "backend_tls_unverified",
                backend=name,
                url=backend.url,
                message="tls.verify is false: any certificate is accepted for this backend",
            )
        return ConnectionPool(
            backend.host,
            backend.port,
            connect_timeout=backend.timeouts.connect,
            max_idle=backend.max_idle_connections,
            max_connections=backend.max_connections,
            tls=TlsClient.for_backend(backend),
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
