"""Which backend serves a request (SPEC §4 steps 2-4): a pure function of its inputs.

Order: the force header (QA), then the flag's targeting lists, then the sticky
bucket. A request without a sticky key gets a random one, which the caller
returns in the `turnout-id` cookie so the client's next requests stick.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.decision.bucketing import BUCKETS, bucket_of, random_sticky_key
from proxy.decision.flag_rule import FlagRule
from proxy.decision.identity import IdentityReader
from proxy.decision.sides import BACKEND_BY_NAME, LEGACY, NEW


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
