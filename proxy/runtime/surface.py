"""What a process shows the admin API, shared by a single process and the supervisor.

Both ``Turnout`` (one process) and ``SupervisorControl`` (``--workers N``) own a
``Controller``; everything the admin API reads from it is the same, so it is
written once here. They differ in where counters come from and in what a
runtime change must reach besides the controller (the workers).
"""

from __future__ import annotations

from typing import Any

from proxy.canary.machine import CanaryRefused
from proxy.canary.runner import CanaryRunner
from proxy.control.controller import (
    Controller,
    UnknownFlag,
    apply_mutation,
    retry_on_conflict,
)
from proxy.control.state import FlagOverride
from proxy.exchange.service import ProxyTable
from proxy.observe.prometheus import ControlState
from proxy.observe.status import RateWindow


class ControlSurface:
    """The admin API's view of a ``Controller`` (see ``proxy.admin.api.Control``)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.rates = RateWindow()
        self.canary: CanaryRunner | None = None
        """The canary judge, in the process that owns the state (not with --workers)."""

    @property
    def table(self) -> ProxyTable:
        return self.controller.table

    def control_state(self) -> ControlState:
        return ControlState(
            flag_percent={name: rule.percent for name, rule in self.table.flags.items()},
            canary_state={name: s["state"] for name, s in self.canary_status().items()},
            reloads=dict(self.controller.reloads),
            last_reload_success=self.controller.last_reload_success,
            state_store_up=self.controller.store.up(),
        )

    async def fleet_status(self) -> dict[str, Any] | None:
        """The fleet view of ``/status`` (``None`` without a shared state store)."""
        return None

    def overrides(self) -> dict[str, FlagOverride]:
        return dict(self.controller.state.overrides)

    def canary_status(self) -> dict[str, dict[str, Any]]:
        return self.canary.status() if self.canary is not None else {}

    async def mutate(
        self, action: str, flag: str | None, who: str, percent: float | None = None
    ) -> dict[str, object]:
        """An operator's change; a canary flag's canary follows it (``set`` pauses it,
        ``resume`` restarts it, ...). ``promote`` exists for canary flags only."""
        if action == "promote":
            return await self._promote(flag, who)
        result = await apply_mutation(self.controller, action, flag, who, percent)
        canary = self.canary
        if canary is not None:
            await retry_on_conflict(lambda: canary.operator(action, flag, who))
            if flag is not None:
                result["after"] = self.table.flags[flag].percent
        return result

    async def _promote(self, flag: str | None, who: str) -> dict[str, object]:
        if flag is None or flag not in self.table.flags:
            raise UnknownFlag(flag)
        if self.canary is None:
            raise CanaryRefused("the canary is not active in this process (--workers)")
        before = self.table.flags[flag].percent
        canary = self.canary
        await retry_on_conflict(lambda: canary.operator("promote", flag, who))
        after = self.table.flags[flag].percent
        return {"flag": flag, "action": "promote", "before": before, "after": after}
