"""The coverage part of ``GET /status``: the map, loaded off the request path.

When the config has ``coverage:``, the two documents are read (in a thread:
files or URLs, each with the fetch deadline of ``source``) when the admin API
starts and again after every reload (a new routing table), never by the
proxy's data path. ``/status`` waits a moment for a load in progress and then
shows ``{"loading": true}`` rather than hanging; a failed load is logged as a
warning and shown as ``{"error": "..."}``, never fails the reload, and is
tried again every 30 s (a backend serving its document may start after the
proxy). The flags' percents are read live at each ``/status``, so a ``set``
or ``rollback`` shows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog

from proxy.config.models import Config
from proxy.coverage.matching import CoverageMap, coverage_map
from proxy.coverage.report import status_coverage
from proxy.coverage.source import SourceError, load_document
from proxy.decision.table import RoutingTable

STATUS_WAIT_SECONDS = 2.0
RETRY_SECONDS = 30.0

_log = structlog.get_logger("turnout.coverage")


def load_map(config: Config) -> CoverageMap:
    """Read both documents named by ``config.coverage`` and match them (blocking)."""
    assert config.coverage is not None
    legacy = load_document(config.coverage.legacy_openapi)
    new = load_document(config.coverage.new_openapi)
    return coverage_map(legacy, new, config)


class LiveCoverage:
    """The map for the active routing table, reloaded when the table is replaced."""

    def __init__(self, wait: float = STATUS_WAIT_SECONDS, retry: float = RETRY_SECONDS) -> None:
        self._wait = wait
        self._retry = retry
        self._table: RoutingTable[Any] | None = None
        self._task: asyncio.Task[CoverageMap] | None = None
        self._failed_at: float | None = None
        self._last_error: str | None = None
        """The failed load's error, shown while its retry runs."""

    def refresh(self, table: RoutingTable[Any]) -> None:
        """Start loading the documents if ``table`` is new (start-up, reload), or if the
        last load failed ``retry`` seconds ago (a backend that was not up yet)."""
        if table is self._table and not self._retry_due():
            return
        if table is not self._table:
            self._table, self._last_error = table, None
        self.close()
        if table.config.coverage is not None:
            self._task = asyncio.create_task(asyncio.to_thread(load_map, table.config))
            self._task.add_done_callback(self._finished)

    def _retry_due(self) -> bool:
        failed_at = self._failed_at
        return failed_at is not None and time.monotonic() - failed_at >= self._retry

    def _finished(self, task: asyncio.Task[CoverageMap]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self._last_error = None if error is None else str(error)
        if error is not None:
            self._failed_at = time.monotonic()
            _log.warning("coverage_load_failed", error=str(error), retry_seconds=self._retry)
            if not isinstance(error, SourceError):
                _log.error("coverage_load_crashed", exc_info=error)

    @property
    def loading(self) -> bool:
        return self._task is not None and not self._task.done()

    async def view(self, table: RoutingTable[Any]) -> dict[str, Any] | None:
        """``/status``'s coverage for ``table``: None without ``coverage:`` in the config."""
        self.refresh(table)
        task = self._task
        if task is None:
            return None
        if self._last_error is None:  # a retry does not hold /status: the last error shows
            await asyncio.wait({task}, timeout=self._wait)
        if not task.done() or task.cancelled():  # cancelled: a reload replaced it meanwhile
            return {"error": self._last_error} if self._last_error else {"loading": True}
        error = task.exception()
        if error is not None:
            return {"error": str(error)}
        percents = {name: rule.percent for name, rule in table.flags.items()}
        return status_coverage(task.result(), percents)

    def close(self) -> None:
        """Stop waiting for a load in progress (its thread ends on its own deadline)."""
        self._failed_at = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
