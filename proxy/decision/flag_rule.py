"""A flag compiled for the hot path (config plus the live threshold)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.flags import FlagConfig
from proxy.decision.bucketing import flag_seed, threshold_for
from proxy.resilience.fallback import FallbackBudget, FallbackPolicy


@dataclass(slots=True, eq=False)
class FlagRule:
    """A flag compiled for the hot path.

    Everything is fixed at compile time except ``threshold``: runtime overrides
    (admin API, canary) replace it in place, an atomic attribute store.
    """

    name: str
    seed: int
    threshold: int
    file_percent: float
    new_users: frozenset[str]
    new_tenants: frozenset[str]
    legacy_users: frozenset[str]
    legacy_tenants: frozenset[str]
    config: FlagConfig
    fallback: FallbackPolicy | None
    budget: FallbackBudget | None

    @classmethod
    def from_config(cls, name: str, config: FlagConfig) -> FlagRule:
        targeting = config.targeting
        return cls(
            name=name,
            seed=flag_seed(name),
            threshold=threshold_for(config.percent),
            file_percent=config.percent,
            new_users=frozenset(targeting.new.users),
            new_tenants=frozenset(targeting.new.tenants),
            legacy_users=frozenset(targeting.legacy.users),
            legacy_tenants=frozenset(targeting.legacy.tenants),
            config=config,
            fallback=FallbackPolicy.from_config(config.fallback) if config.fallback else None,
            budget=FallbackBudget(config.fallback.budget_percent / 100)
            if config.fallback
            else None,
        )

    @property
    def percent(self) -> float:
        return self.threshold / 100

    @property
    def has_user_targets(self) -> bool:
        return bool(self.new_users or self.legacy_users)

    @property
    def has_tenant_targets(self) -> bool:
        return bool(self.new_tenants or self.legacy_tenants)
