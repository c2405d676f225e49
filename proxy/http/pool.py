"""Backend connection pools, and the backend targets the data plane forwards to.

``PoolRegistry`` keeps pools by backend identity, so that a reload that leaves a
backend unchanged keeps its warm connections. A pool speaks TLS to an
``https://`` backend with one ``SSLContext`` built when the pool is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from proxy.config.models import BackendConfig, Backends
from proxy.config.tls import BackendTls, client_context
from proxy.http.errors import UpstreamConnectError
from proxy.http.upstream import UpstreamConnection

_log = structlog.get_logger("turnout.pool")


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
        tls: TlsClient | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self.tls = tls
        self._idle: list[UpstreamConnection] = []
        self._closed = False
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
                return conn, True
            conn.close()
        limit = self.connect_timeout if connect_timeout is None else connect_timeout
        return await self._open(limit), False

    async def connect(self, connect_timeout: float | None = None) -> UpstreamConnection:
        """A new connection (upgrades, health checks)."""
        limit = self.connect_timeout if connect_timeout is None else connect_timeout
        return await self._open(limit)

    async def _open(self, limit: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        tls = self.tls
        try:
            async with asyncio.timeout(limit):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(loop),
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

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange, or close it."""
        if conn.reusable and not self._closed and len(self._idle) < self.max_idle:
            conn.headers_done = None
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
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
