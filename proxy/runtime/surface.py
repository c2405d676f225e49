"""What a process shows the admin API, shared by a single process and the supervisor.

Both ``Turnout`` (one process) and ``SupervisorControl`` (``--workers N``) own a
``Controller``; everything the admin API reads from it is the same, so it is
written once here. They differ in where counters come from and in what a
runtime change must reach besides the controller (the workers).
"""

from __future__ import annotations

from proxy.control.controller import Controller, apply_mutation
from proxy.control.state import FlagOverride
from proxy.exchange.service import ProxyTable
from proxy.observe.prometheus import ControlState
from proxy.observe.status import RateWindow


class ControlSurface:
    """The admin API's view of a ``Controller`` (see ``proxy.admin.api.Control``)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.rates = RateWindow()

    @property
    def table(self) -> ProxyTable:
        return self.controller.table

    def control_state(self) -> ControlState:
        return ControlState(
            flag_percent={name: rule.percent for name, rule in self.table.flags.items()},
            reloads=dict(self.controller.reloads),
            last_reload_success=self.controller.last_reload_success,
        )

    def overrides(self) -> dict[str, FlagOverride]:
        return dict(self.controller.state.overrides)

    async def mutate(
        self, action: str, flag: str | None, who: str, percent: float | None = None
    ) -> dict[str, object]:
        return apply_mutation(self.controller, action, flag, who, percent)
