"""Live control of one process's proxy (SPEC §6): reloads and runtime overrides.

Precedence: a runtime override (``set``, ``rollback``, the canary) beats
the file's ``percent`` until ``resume``. Overrides live in the state store (the
state file, or Redis in fleet mode), so they survive reloads and restarts. A
change is written to the store first and applied only when the write succeeded.
A reload validates the whole new file first; an invalid one is refused, logged
with every error, counted, and the old config keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from proxy.config.loader import ConfigError, LoadedConfig, read_config
from proxy.control.state import (
    FlagOverride,
    RuntimeState,
    StateBackend,
    VersionConflict,
)
from proxy.decision.bucketing import threshold_for
from proxy.decision.table import compile_table
from proxy.exchange.service import ProxyService, ProxyTable
from proxy.http.pool import PoolRegistry
from proxy.observe.stats import Stats

_log = structlog.get_logger("turnout.control")
T = TypeVar("T")
_audit = structlog.get_logger("turnout.audit")


class UnknownFlag(KeyError):
    """A runtime change named a flag the active config does not have."""


class RolledBack(Exception):
    """`set` on a rolled-back flag: a rollback holds until `resume` (SPEC §6, §7), so a
    percent set on top of it would lift it silently; the operator resumes first."""

    def __init__(self, flag: str, override: FlagOverride) -> None:
        at = datetime.fromtimestamp(override.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        super().__init__(
            f"{flag} was rolled back by {override.by} at {at}; `turnout resume {flag}` first"
        )


class Controller:
    """Owns the loaded config, the runtime state and the reload counters of a process."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: StateBackend,
        stats: Stats,
        pools: PoolRegistry,
        on_table: Callable[[ProxyTable], None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.store = store
        self.state = store.load()
        self.version = 0
        """The store's version of ``state`` (a shared store's counter; 0 before any)."""
        self._stats = stats
        self._pools = pools
        self._on_table = on_table
        # Only reloads count: the start-up load is none. The timestamp is when the config
        # in use was loaded, so at start it is the start time (Prometheus's own
        # `prometheus_config_last_reload_success_timestamp_seconds` does the same).
        self.reloads = {"success": 0, "failure": 0}
        self.last_reload_success = time.time()
        self.table = self._compile(loaded)

    def _compile(self, loaded: LoadedConfig) -> ProxyTable:
        return compile_table(
            loaded.config,
            loaded.hash,
            self._stats,
            self._pools.targets(loaded.config.backends),
            self.state.percents(),
        )

    def attach(self, service: ProxyService) -> None:
        """Send every new table to ``service`` from now on."""
        self._on_table = service.swap_table

    # -- reload ---------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config file; keep the old config if the new one is invalid."""
        try:
            loaded = read_config(self.loaded.path)
        except ConfigError as error:
            self.reloads["failure"] += 1
            _log.error(
                "config_reload_failed",
                config=self.loaded.path,
                errors=[str(issue) for issue in error.issues],
                keeps=self.loaded.hash[:12],
            )
            return False
        changed = loaded.hash != self.loaded.hash
        self.loaded = loaded
        self.table = self._compile(loaded)
        if self._on_table is not None:
            self._on_table(self.table)
        self.reloads["success"] += 1
        self.last_reload_success = time.time()
        _log.info("config_reloaded", config=loaded.path, hash=loaded.hash[:12], changed=changed)
        return True

    # -- runtime overrides ------------------------------------------------------
    def apply_state(self, state: RuntimeState) -> None:
        """Make ``state`` the active runtime state (the table's flags follow at once)."""
        self.state = state
        overrides = state.percents()
        for name, rule in self.table.flags.items():
            rule.threshold = threshold_for(overrides.get(name, rule.file_percent))

    def adopt(self, state: RuntimeState, version: int) -> bool:
        """Apply a state read from the store, unless this process already has it or a
        newer one (versions only grow). True when applied."""
        if version <= self.version:
            return False
        self.version = version
        self.apply_state(state)
        return True

    async def _write(self, state: RuntimeState, *, fenced: bool = False) -> None:
        """Write ``state`` to the store, conditional on the version it was computed
        from, then apply it. On a conflict the stored state is adopted and the
        conflict raised: the caller computes its change again."""
        try:
            version = await self.store.write(state, self.version, fenced=fenced)
        except VersionConflict as conflict:
            self.adopt(conflict.state, conflict.version)
            raise
        self.adopt(state, version)

    def _flag(self, name: str) -> float:
        rule = self.table.flags.get(name)
        if rule is None:
            raise UnknownFlag(name)
        return rule.percent

    async def _change(
        self, state: RuntimeState, action: str, flag: str, before: float, who: str
    ) -> dict[str, object]:
        await self._write(state)
        after = self.table.flags[flag].percent
        _audit.info("flag_changed", action=action, flag=flag, before=before, after=after, who=who)
        return {"flag": flag, "action": action, "before": before, "after": after, "changed": True}

    async def set_percent(self, flag: str, percent: float, who: str) -> dict[str, object]:
        """Raises ``RolledBack`` while a rollback holds the flag."""
        before = self._flag(flag)
        current = self.state.overrides.get(flag)
        if current is not None and current.reason == "rollback":
            raise RolledBack(flag, current)
        override = FlagOverride(percent=percent, reason="set", by=who, at=time.time())
        state = self.state.with_override(flag, override)
        return await self._change(state, "set", flag, before, who)

    async def rollback(self, flag: str, who: str) -> dict[str, object]:
        before = self._flag(flag)
        override = FlagOverride(percent=0.0, reason="rollback", by=who, at=time.time())
        state = self.state.with_override(flag, override)
        return await self._change(state, "rollback", flag, before, who)

    async def resume(self, flag: str, who: str) -> dict[str, object]:
        """Back to the file's percent; without an override a no-op that says so."""
        before = self._flag(flag)
        if flag not in self.state.overrides:
            message = f"{flag} has no runtime override: nothing to resume"
            return {"flag": flag, "action": "resume", "before": before, "after": before,
                    "changed": False, "message": message}  # fmt: skip
        return await self._change(self.state.without(flag), "resume", flag, before, who)

    async def apply_canary(
        self,
        flag: str,
        progress: dict[str, object],
        override: FlagOverride | None,
        *,
        fenced: bool = False,
    ) -> None:
        """The canary's progress for ``flag`` and, when given, its new percent, in one
        state write (so a restart finds both or neither). ``fenced``: a judgement, which
        only the lease holder may write (``NotLeader`` otherwise)."""
        before = self.table.flags[flag].percent
        state = self.state.with_canary(flag, progress)
        if override is not None:
            state = state.with_override(flag, override)
        await self._write(state, fenced=fenced)
        after = self.table.flags[flag].percent
        if after != before:
            _audit.info(
                "flag_changed", action=override.reason if override else "canary", flag=flag,
                before=before, after=after, who="canary",
            )

    async def rollback_all(self, who: str) -> dict[str, object]:
        """The big red button: every flag to 0 %, in one state write."""
        state = self.state
        now = time.time()
        before = {name: rule.percent for name, rule in self.table.flags.items()}
        for name in before:
            override = FlagOverride(percent=0.0, reason="rollback", by=who, at=now)
            state = state.with_override(name, override)
        await self._write(state)
        for name, percent in before.items():
            _audit.info(
                "flag_changed", action="rollback", flag=name, before=percent, after=0.0, who=who
            )
        return {
            "flags": [
                {"flag": name, "before": percent, "after": 0.0} for name, percent in before.items()
            ]
        }


CONFLICT_ATTEMPTS = 5
"""Tries of a change that other replicas' writes keep overtaking (each try adopts the
newer state first, so a retry computes the change on top of theirs)."""


async def retry_on_conflict(change: Callable[[], Awaitable[T]]) -> T:
    """Run ``change`` again after a ``VersionConflict`` (at most ``CONFLICT_ATTEMPTS``)."""
    for _ in range(CONFLICT_ATTEMPTS - 1):
        try:
            return await change()
        except VersionConflict:
            continue
    return await change()


async def apply_mutation(
    controller: Controller, action: str, flag: str | None, who: str, percent: float | None
) -> dict[str, object]:
    """One admin API change: ``percent`` (with ``percent``), ``rollback`` (``flag`` None
    = every flag) or ``resume``. Raises ``UnknownFlag``, ``RolledBack`` and, from the
    store, ``StoreUnavailable`` (nothing changed)."""

    async def change() -> dict[str, object]:
        if action == "rollback" and flag is None:
            return await controller.rollback_all(who)
        assert flag is not None
        if action == "percent":
            assert percent is not None
            return await controller.set_percent(flag, percent, who)
        if action == "rollback":
            return await controller.rollback(flag, who)
        return await controller.resume(flag, who)

    return await retry_on_conflict(change)
