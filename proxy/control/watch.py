"""Config file watching by polling (SPEC §6).

Polling ``stat`` twice a second costs nothing measurable and works the same
everywhere: on every filesystem, in every container, and with the way
Kubernetes updates a mounted ConfigMap. There the mount looks like::

    config.yaml -> ..data/config.yaml
    ..data -> ..2026_01_01_a          (swapped atomically to ..2026_01_01_b)
    ..2026_01_01_a/config.yaml

An update never touches ``config.yaml`` itself: it writes a new timestamped
directory and renames a fresh ``..data`` symlink over the old one. inotify on
``config.yaml`` misses that (it watches the old inode); comparing the resolved
target's identity and the links' own identities catches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import structlog

_log = structlog.get_logger("turnout.watch")

MAX_SETTLE_ROUNDS = 10
"""A file still changing after this many debounce periods is reported anyway."""


class _Target(NamedTuple):
    """The resolved file: which one it is and what it holds, as far as ``stat`` tells."""

    realpath: str
    ino: int
    dev: int
    mtime_ns: int
    size: int


class Fingerprint(NamedTuple):
    """What the watcher compares between polls; ``target`` is None when the file is missing."""

    links: tuple[tuple[str, int, int, str], ...]
    """(path, inode, mtime_ns, link text) of each symlink on the way."""
    target: _Target | None


def fingerprint(path: str) -> Fingerprint:
    """The current fingerprint of ``path``, following symlinks; never raises."""
    links = tuple(
        link for name in _link_candidates(path) if (link := _link_identity(name)) is not None
    )
    try:
        stat = os.stat(path)
    except OSError:
        return Fingerprint(links, None)
    real = os.path.realpath(path)
    target = _Target(real, stat.st_ino, stat.st_dev, stat.st_mtime_ns, stat.st_size)
    return Fingerprint(links, target)


def _link_candidates(path: str) -> tuple[str, str]:
    """The path itself and the ConfigMap's ``..data`` link next to it."""
    return path, os.path.join(os.path.dirname(path) or ".", "..data")


def _link_identity(name: str) -> tuple[str, int, int, str] | None:
    try:
        stat = os.lstat(name)
        text = os.readlink(name)
    except OSError:  # missing, or not a symlink (EINVAL): nothing to track
        return None
    return name, stat.st_ino, stat.st_mtime_ns, text


class ConfigWatcher:
    """Calls ``on_change()`` once the file at ``path`` changed and stopped changing.

    A change is reported once: a file that goes missing is reported (the
    reload then reports the error) and not again until it changes once more.
    ``on_change`` runs inside the watcher's task, so a slow reload delays the
    next poll rather than overlapping with it; its exceptions are logged and
    the watching goes on.
    """

    def __init__(
        self,
        path: str,
        on_change: Callable[[], Awaitable[None]],
        *,
        interval: float = 0.5,
        debounce: float = 0.2,
    ) -> None:
        self.path = path
        self._on_change = on_change
        self._interval = interval
        self._debounce = debounce
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start watching; changes from this moment on are reported."""
        if self.running:
            return
        baseline = fingerprint(self.path)  # taken now, so a write right after start() counts
        self._task = asyncio.create_task(self._run(baseline), name=f"watch {self.path}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self, last: Fingerprint) -> None:
        while True:
            await asyncio.sleep(self._interval)
            current = fingerprint(self.path)
            if current == last:
                continue
            current = await self._settle(current)
            if current == last:  # changed and changed back within the debounce
                continue
            last = current
            await self._notify(current)

    async def _settle(self, current: Fingerprint) -> Fingerprint:
        """Wait until two looks ``debounce`` apart agree (bounded), so a burst is one change."""
        for _ in range(MAX_SETTLE_ROUNDS):
            await asyncio.sleep(self._debounce)
            again = fingerprint(self.path)
            if again == current:
                return current
            current = again
        _log.warning("config_still_changing", path=self.path, rounds=MAX_SETTLE_ROUNDS)
        return current

    async def _notify(self, current: Fingerprint) -> None:
        _log.info(
            "config_file_changed",
            path=self.path,
            missing=current.target is None,
            target=current.target.realpath if current.target else None,
        )
        try:
            await self._on_change()
        except Exception:
            _log.exception("config_reload_callback_failed", path=self.path)
