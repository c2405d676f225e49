"""Which backend serves a request (SPEC §4 steps 2-4): a pure function of its inputs.

Order: the force header (QA), then the flag's targeting lists, then the sticky
bucket. A request without a sticky key gets a random one, which the caller
returns in the `turnout-id` cookie so the client's next requests stick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config.models import FlagConfig
from proxy.decision.bucketing import BUCKETS, bucket_of, flag_seed, random_sticky_key, threshold_for
from proxy.decision.identity import IdentityReader
from proxy.resilience.fallback import FallbackBudget, FallbackPolicy

LEGACY = 0
NEW = 1
BACKEND_NAMES = ("legacy", "new")
BACKEND_BY_NAME = {"legacy": LEGACY, "new": NEW}


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


def forced_backend(headers: Mapping[str, str], force_header: str | None) -> int | None:
    """The side named by the force header (`legacy` or `new`), if set and valid."""
    if force_header is None:
        return None
    value = headers.get(force_header)
    if value is None:
        return None
    return BACKEND_BY_NAME.get(value.strip().lower())


def targeted_backend(
    flag: FlagRule, identity: IdentityReader, headers: Mapping[str, str]
) -> int | None:
    """The side a targeting list pins this request to, if any. `legacy` lists win ties."""
    if flag.has_user_targets:
        user = identity.user(headers)
        if user is not None:
            if user in flag.legacy_users:
                return LEGACY
            if user in flag.new_users:
                return NEW
    if flag.has_tenant_targets:
        tenant = identity.tenant(headers)
        if tenant is not None:
            if tenant in flag.legacy_tenants:
                return LEGACY
            if tenant in flag.new_tenants:
                return NEW
    return None


def decide(
    flag: FlagRule,
    identity: IdentityReader,
    headers: Mapping[str, str],
    remote: str | None,
    force_header: str | None,
) -> tuple[int, str | None]:
    """(backend, new sticky key to set as a cookie or None) for a request of ``flag``."""
    forced = forced_backend(headers, force_header)
    if forced is not None:
        return forced, None
    targeted = targeted_backend(flag, identity, headers)
    if targeted is not None:
        return targeted, None
    threshold = flag.threshold
    key = identity.sticky_key(headers, remote)
    assigned: str | None = None
    if key is None:
        key = assigned = random_sticky_key()
        if not identity.use_sticky_cookie:
            assigned = None
    if threshold <= 0:
        return LEGACY, assigned
    if threshold >= BUCKETS:
        return NEW, assigned
    return (NEW if bucket_of(key, flag.seed) < threshold else LEGACY), assigned
