"""The coverage part of ``GET /status``: the map, loaded off the request path.

When the config has ``coverage:``, the two documents are read (in a thread:
files or URLs, each with the fetch deadline of ``source``) when the admin API
starts and again after every reload (a new routing table), never by the
proxy's data path. ``/status`` waits a moment for a load in progress and then
shows ``{"loading": true}`` rather than hanging; a failed load is logged as a
warning and shown as ``{"error": "..."}``, and never fails the reload. The
flags' percents are read live at each ``/status``, so a ``set`` or
``rollback`` shows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from proxy.config.models import Config
from proxy.coverage.matching import CoverageMap, coverage_map
from proxy.coverage.report import status_coverage
from proxy.coverage.source import SourceError, load_document
from proxy.decision.table import RoutingTable

STATUS_WAIT_SECONDS = 2.0

_log = structlog.get_logger("turnout.coverage")


def load_map(config: Config) -> CoverageMap:
    """Read both documents named by ``config.coverage`` and match them (blocking)."""
    assert config.coverage is not None
    legacy = load_document(config.coverage.legacy_openapi)
    new = load_document(config.coverage.new_openapi)
    return coverage_map(legacy, new, config)


class LiveCoverage:
    """The map for the active routing table, reloaded when the table is replaced."""

    def __init__(self, wait: float = STATUS_WAIT_SECONDS) -> None:
        self._wait = wait
        self._table: RoutingTable[Any] | None = None
        self._task: asyncio.Task[CoverageMap] | None = None

    def refresh(self, table: RoutingTable[Any]) -> None:
        """Start loading the documents if ``table`` is new (start-up, reload)."""
        if table is self._table:
            return
        self._table = table
        self.close()
        if table.config.coverage is not None:
            self._task = asyncio.create_task(asyncio.to_thread(load_map, table.config))
            self._task.add_done_callback(_log_failure)

    @property
    def loading(self) -> bool:
        return self._task is not None and not self._task.done()

    async def view(self, table: RoutingTable[Any]) -> dict[str, Any] | None:
        """``/status``'s coverage for ``table``: None without ``coverage:`` in the config."""
        self.refresh(table)
        task = self._task
        if task is None:
            return None
        await asyncio.wait({task}, timeout=self._wait)
        if not task.done() or task.cancelled():  # cancelled: a reload replaced it meanwhile
            return {"loading": True}
        error = task.exception()
        if error is not None:
            return {"error": str(error)}
        percents = {name: rule.percent for name, rule in table.flags.items()}
        return status_coverage(task.result(), percents)

    def close(self) -> None:
        """Stop waiting for a load in progress (its thread ends on its own deadline)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _log_failure(task: asyncio.Task[CoverageMap]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if isinstance(error, SourceError):
        _log.warning("coverage_load_failed", error=str(error))
    elif error is not None:
        _log.warning("coverage_load_failed", error=repr(error), exc_info=error)
