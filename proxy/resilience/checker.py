"""The active health checker: the I/O half of backend health.

Each checker probes one backend with ``GET health.path`` every ``interval`` and
feeds the result into that backend's ``BackendHealth`` state machine
(``proxy.resilience.health``), which decides what the answers mean.
"""

from __future__ import annotations

import asyncio

from proxy.config.models import BackendConfig, HealthCheck
from proxy.http.errors import UpstreamError
from proxy.http.pool import ConnectionPool, TlsClient
from proxy.resilience.health import BackendHealth


class HealthChecker:
    """Periodic `GET health.path` against one backend, fed into its BackendHealth."""

    def __init__(self, health: BackendHealth, backend: BackendConfig, check: HealthCheck) -> None:
        self._health = health
        self._check = check
        self._pool = ConnectionPool(
            backend.host,
            backend.port,
            connect_timeout=check.timeout,
            tls=TlsClient.for_backend(backend),  # an https:// backend is checked over TLS
        )
        self._host = f"{backend.host}:{backend.port}".encode()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def probe(self) -> bool:
        """One check: a 2xx answer within ``timeout`` is healthy."""
        head = (
            b"GET %b HTTP/1.1\r\nhost: %b\r\nuser-agent: turnout-health\r\n"
            b"connection: close\r\n\r\n" % (self._check.path.encode(), self._host)
        )
        try:
            async with asyncio.timeout(self._check.timeout):
                conn = await self._pool.connect()
                try:
                    conn.begin(head, head_request=False)
                    conn.expect_response(self._check.timeout)
                    assert conn.headers_done is not None
                    await conn.headers_done
                    return 200 <= conn.status < 300
                finally:
                    conn.close()
        except (UpstreamError, TimeoutError, OSError):
            return False

    async def _run(self) -> None:
        while True:
            self._health.record_check(await self.probe(), self._check)
            await asyncio.sleep(self._check.interval)
