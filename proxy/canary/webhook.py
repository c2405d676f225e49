"""Canary transitions POSTed to ``canary.webhook``: fire and forget.

Each POST runs in its own task with a short total timeout; a failure (refused,
timeout, non-2xx) is logged and dropped. Nothing waits for a webhook: not the
judge, not a request.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import structlog

_log = structlog.get_logger("turnout.canary")
TIMEOUT_SECONDS = 2.0


class WebhookSender:
    def __init__(self, timeout: float = TIMEOUT_SECONDS) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, url: str, body: dict[str, Any]) -> None:
        """Start the POST and return at once."""
        task = asyncio.get_running_loop().create_task(self._post(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(url, json=body) as response:
                if response.status >= 300:
                    _log.warning(
                        "canary_webhook_failed",
                        url=url,
                        flag=body.get("flag"),
                        status=response.status,
                    )
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            _log.warning(
                "canary_webhook_failed",
                url=url,
                flag=body.get("flag"),
                error=str(error) or type(error).__name__,
            )

    async def close(self) -> None:
        """Give pending POSTs their timeout to finish, then close the session."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout.total)
        for task in set(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
