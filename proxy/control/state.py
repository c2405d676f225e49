"""Runtime overrides and canary progress that survive reloads and restarts (SPEC §6).

``RuntimeState`` is an immutable value: every change makes a new one, so the
proxy can swap it in with one assignment and a reader never sees half an
update. ``StateStore`` persists it to ``state_file``.

Durability: a save writes a temporary file in the same directory, fsyncs it,
``os.replace``\\ s it onto the state file and fsyncs the directory. A crash
(even ``kill -9`` or a power cut) therefore leaves either the previous complete
state or the new complete state, never a torn file. A file that still does
not parse (edited by hand, disk trouble, a newer format) is renamed aside and
logged, not deleted: an operator's rollback is not something to lose quietly.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import structlog

from proxy.config.values import is_number

_log = structlog.get_logger("turnout.state")

FORMAT_VERSION = 1
REASONS = frozenset({"set", "rollback", "canary"})
"""Why a flag's percent differs from the file: `turnout set`, a rollback, the canary."""


class StateFormatError(ValueError):
    """The state file's content is not a state this version understands."""


class StoreUnavailable(Exception):
    """The state store cannot be written now (Redis down): the change is not made.

    The admin API answers 503 with this message; nothing is applied locally."""


class VersionConflict(Exception):
    """Another replica wrote the state since this one read it. Carries the stored
    state and its version (read in the same atomic step) to adopt before a retry."""

    def __init__(self, version: int, state: RuntimeState) -> None:
        super().__init__(f"the state changed meanwhile (now version {version})")
        self.version = version
        self.state = state


class NotLeader(Exception):
    """A fenced write (a canary judgement) by a replica that no longer holds the lease."""


class StateBackend(Protocol):
    """Where the runtime state lives: the local ``state_file`` or a shared store.

    ``write`` is conditional: it succeeds only when the stored version is still
    ``base`` (the version the change was computed from) and returns the new
    version. ``fenced`` writes (canary judgements) also need this replica to
    hold the judge's lease. Raises ``StoreUnavailable``, ``VersionConflict`` or
    ``NotLeader``; on any of them nothing was written.
    """

    def load(self) -> RuntimeState: ...

    async def write(self, state: RuntimeState, base: int, *, fenced: bool = False) -> int: ...

    def up(self) -> bool: ...


@dataclass(frozen=True)
class FlagOverride:
    """A runtime percent that takes precedence over the file's until ``resume``."""

    percent: float
    reason: str
    """One of ``REASONS``."""
    by: str
    """Who: the admin client's address, or ``"canary"``."""
    at: float
    """Unix time of the change."""


@dataclass(frozen=True)
class RuntimeState:
    overrides: Mapping[str, FlagOverride] = field(default_factory=dict)
    canary: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    """Canary progress per flag, opaque JSON owned by the canary controller."""

    def with_override(self, flag: str, override: FlagOverride) -> RuntimeState:
        return RuntimeState({**self.overrides, flag: override}, self.canary)

    def with_canary(self, flag: str, progress: dict[str, Any]) -> RuntimeState:
        """The state with ``flag``'s canary progress replaced (overrides unchanged)."""
        return RuntimeState(self.overrides, {**self.canary, flag: progress})

    def without(self, flag: str) -> RuntimeState:
        """The state with ``flag``'s override removed (``resume``); canary progress stays."""
        overrides = {name: o for name, o in self.overrides.items() if name != flag}
        return RuntimeState(overrides, self.canary)

    def percents(self) -> dict[str, float]:
        """The overridden percent of each overridden flag."""
        return {name: override.percent for name, override in self.overrides.items()}


def encode_state(state: RuntimeState) -> bytes:
    document = {
        "version": FORMAT_VERSION,
        "overrides": {
            name: {"percent": o.percent, "reason": o.reason, "by": o.by, "at": o.at}
            for name, o in state.overrides.items()
        },
        "canary": dict(state.canary),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def decode_state(raw: bytes) -> RuntimeState:
    """Parse and check a state file's bytes; raises ``StateFormatError`` with the reason."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateFormatError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise StateFormatError("not a JSON object")
    if document.get("version") != FORMAT_VERSION:
        raise StateFormatError(f"unsupported version {document.get('version')!r}")
    overrides = document.get("overrides", {})
    canary = document.get("canary", {})
    if not isinstance(overrides, dict) or not isinstance(canary, dict):
        raise StateFormatError("overrides and canary must be JSON objects")
    for name, progress in canary.items():
        if not isinstance(progress, dict):
            raise StateFormatError(f"canary.{name}: not a JSON object")
    return RuntimeState({name: _override(name, o) for name, o in overrides.items()}, canary)


def _override(name: str, data: Any) -> FlagOverride:
    if not isinstance(data, dict):
        raise StateFormatError(f"overrides.{name}: not a JSON object")
    percent, reason, by, at = (data.get(key) for key in ("percent", "reason", "by", "at"))
    if not is_number(percent) or not 0 <= percent <= 100:
        raise StateFormatError(f"overrides.{name}.percent: not a number in 0..100")
    if reason not in REASONS:
        raise StateFormatError(f"overrides.{name}.reason: {reason!r} is not one of {REASONS}")
    if not isinstance(by, str) or not is_number(at):
        raise StateFormatError(f"overrides.{name}: 'by' must be a string and 'at' a number")
    return FlagOverride(float(percent), reason, by, float(at))


class StateStore:
    """Loads and saves the ``RuntimeState``; ``path=None`` keeps it in memory only.

    Not safe for concurrent writers: one process (the supervisor with
    ``--workers``) owns the file.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._memory = RuntimeState()

    async def write(self, state: RuntimeState, base: int, *, fenced: bool = False) -> int:
        """``save`` behind the ``StateBackend`` interface: one writer, so no conflicts
        and no lease (``fenced`` is moot); the version only counts this process's writes."""
        self.save(state)
        return base + 1

    def up(self) -> bool:
        """Whether the next save can succeed: the file's directory is writable (a save
        writes a temporary file there and renames it). Always true without a file
        (``turnout_state_store_up``)."""
        if self.path is None:
            return True
        return os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK)

    def load(self) -> RuntimeState:
        """The saved state; empty when there is none, or when it is corrupt (set aside)."""
        if self.path is None:
            return self._memory
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
            return decode_state(raw)
        except FileNotFoundError:
            return RuntimeState()
        except (OSError, StateFormatError) as exc:
            _set_aside(self.path, exc)
            return RuntimeState()

    def save(self, state: RuntimeState) -> None:
        """Replace the saved state atomically and durably (see the module docstring)."""
        if self.path is None:
            self._memory = state
            return
        data = encode_state(state)  # before touching the disk: a bad value changes nothing
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temp = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            _unlink_quietly(temp)
            raise
        _fsync_directory(directory)


def _set_aside(path: str, problem: Exception) -> None:
    """Rename an unusable state file out of the way and say so, loudly."""
    reason = str(problem) if isinstance(problem, StateFormatError) else repr(problem)
    aside = _free_name(f"{path}.corrupt-{int(time.time())}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        _log.error(
            "state_file_corrupt",
            path=path,
            reason=reason,
            set_aside_as=None,
            set_aside_error=repr(exc),
            consequence="starting without runtime overrides; the next change overwrites it",
        )
        return
    _log.error(
        "state_file_corrupt",
        path=path,
        reason=reason,
        set_aside_as=aside,
        consequence="starting without runtime overrides",
    )


def _free_name(candidate: str) -> str:
    """``candidate``, or ``candidate-N`` when an earlier corrupt file took that name."""
    name, n = candidate, 1
    while os.path.lexists(name):
        name, n = f"{candidate}-{n}", n + 1
    return name


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
