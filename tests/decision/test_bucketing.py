"""Sticky bucketing and the per-request decision (SPEC §4 steps 2-4), without sockets."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.models import FlagConfig, StickySource
from proxy.decision.bucketing import BUCKETS, bucket_of, flag_seed, threshold_for
from proxy.decision.decide import decide
from proxy.decision.flag_rule import FlagRule
from proxy.decision.identity import IdentityReader, cookie_value, jwt_claim, jwt_claims
from proxy.decision.sides import LEGACY, NEW

USERS = [f"user-{i}" for i in range(3000)]


def flag(name: str = "user-api", **settings: object) -> FlagRule:
    return FlagRule.from_config(name, FlagConfig.model_validate(settings))


def reader(*sources: StickySource, sticky_cookie: bool = True) -> IdentityReader:
    return IdentityReader.from_config(list(sources), sticky_cookie)


HEADER = StickySource(kind="header", name="x-user-id")


def share_to_new(rule: FlagRule, users: list[str]) -> float:
    identity = reader(HEADER)
    sides = [decide(rule, identity, {"x-user-id": u}, None, None)[0] for u in users]
    return sides.count(NEW) / len(sides)


def test_thirty_percent_sends_27_to_33_percent_of_3000_users_to_new() -> None:
    assert 0.27 <= share_to_new(flag(percent=30), USERS) <= 0.33


def test_same_user_always_lands_on_the_same_side() -> None:
    rule, identity = flag(percent=50), reader(HEADER)
    for user in USERS[:200]:
        sides = {decide(rule, identity, {"x-user-id": user}, None, None)[0] for _ in range(5)}
        assert len(sides) == 1


def test_flags_bucket_independently() -> None:
    a, b = flag("a", percent=50), flag("b", percent=50)
    identity = reader(HEADER)
    same = sum(
        decide(a, identity, {"x-user-id": u}, None, None)[0]
        == decide(b, identity, {"x-user-id": u}, None, None)[0]
        for u in USERS
    )
    # Independent 50/50 flags agree for about half the users (binomial, 3000 draws:
    # +-5 % is more than 5 standard deviations).
    assert 0.45 * len(USERS) <= same <= 0.55 * len(USERS)


_CHILD = """
import json, sys
from proxy.decision.bucketing import bucket_of, flag_seed
seed = flag_seed("user-api")
print(json.dumps([bucket_of(u, seed) < int(sys.argv[1]) for u in json.loads(sys.stdin.read())]))
"""


def _in_new_from_other_process(percent: float, users: list[str]) -> list[bool]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(threshold_for(percent))],
        input=json.dumps(users),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "random", "PATH": ""},
        cwd=".",
    )
    decoded: list[bool] = json.loads(result.stdout)
    return decoded


def test_other_process_agrees_and_raising_percent_moves_nobody_back() -> None:
    seed = flag_seed("user-api")
    here_30 = [bucket_of(u, seed) < threshold_for(30) for u in USERS]
    there_30 = _in_new_from_other_process(30, USERS)
    there_60 = _in_new_from_other_process(60, USERS)
    assert here_30 == there_30
    assert all(later for earlier, later in zip(there_30, there_60, strict=True) if earlier)
    assert 0.57 <= sum(there_60) / len(USERS) <= 0.63


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=40),
    name=st.text(min_size=1, max_size=20),
    low=st.floats(min_value=0, max_value=100),
    high=st.floats(min_value=0, max_value=100),
)
def test_monotonic_raising_percent_never_moves_a_key_back(
    key: str, name: str, low: float, high: float
) -> None:
    low, high = sorted((round(low, 2), round(high, 2)))
    bucket = bucket_of(key, flag_seed(name))
    assert 0 <= bucket < BUCKETS
    if bucket < threshold_for(low):
        assert bucket < threshold_for(high)


@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=40), name=st.text(max_size=20))
def test_deterministic_same_inputs_same_bucket(key: str, name: str) -> None:
    assert bucket_of(key, flag_seed(name)) == bucket_of(key, flag_seed(name))


def test_zero_and_hundred_percent_are_absolute() -> None:
    assert share_to_new(flag(percent=0), USERS) == 0
    assert share_to_new(flag(percent=100), USERS) == 1


def _jwt(claims: dict[str, object]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(b'{}')}.{b64(orjson.dumps(claims))}.sig"


def test_force_header_beats_targeting_which_beats_buckets() -> None:
    rule = flag(percent=0, targeting={"new": {"users": ["qa-1"]}, "legacy": {"users": ["vip"]}})
    identity = reader(HEADER)
    assert decide(rule, identity, {"x-user-id": "qa-1"}, None, None)[0] == NEW
    assert decide(rule, identity, {"x-user-id": "other"}, None, None)[0] == LEGACY
    forced = {"x-user-id": "qa-1", "x-turnout-backend": "legacy"}
    assert decide(rule, identity, forced, None, "x-turnout-backend")[0] == LEGACY
    full = flag(percent=100, targeting={"legacy": {"users": ["vip"]}})
    assert decide(full, identity, {"x-user-id": "vip"}, None, None)[0] == LEGACY


def test_tenant_from_jwt_claim_or_header() -> None:
    rule = flag(percent=0, targeting={"new": {"tenants": ["internal-qa"]}})
    jwt_source = StickySource(kind="jwt_claim", name="authorization", claim="sub", jwt_in="header")
    identity = reader(jwt_source, HEADER)
    token = "Bearer " + _jwt({"sub": "u1", "tenant": "internal-qa"})
    assert decide(rule, identity, {"authorization": token}, None, None)[0] == NEW
    assert decide(rule, identity, {"x-tenant-id": "internal-qa"}, None, None)[0] == NEW
    assert decide(rule, identity, {"x-tenant-id": "acme"}, None, None)[0] == LEGACY


def test_sticky_sources_first_present_wins_and_jwt_sub_equals_header_user() -> None:
    cookie_jwt = StickySource(kind="jwt_claim", name="access_token", claim="sub", jwt_in="cookie")
    identity = reader(cookie_jwt, StickySource(kind="cookie", name="session_id"), HEADER)
    token = _jwt({"sub": "user-7"})
    assert identity.sticky_key({"cookie": f"a=1; access_token={token}"}, None) == "user-7"
    assert identity.sticky_key({"cookie": "session_id=s9", "x-user-id": "h"}, None) == "s9"
    assert identity.sticky_key({"x-user-id": "h"}, None) == "h"
    ip_identity = reader(StickySource(kind="client_ip"))
    assert ip_identity.sticky_key({}, "10.0.0.1") == "10.0.0.1"


def test_anonymous_request_gets_a_key_to_return_as_cookie() -> None:
    rule = flag(percent=50)
    side, assigned = decide(rule, reader(HEADER), {}, None, None)
    assert assigned is not None and len(assigned) >= 12
    again = {"cookie": f"turnout-id={assigned}"}
    assert all(decide(rule, reader(HEADER), again, None, None) == (side, None) for _ in range(10))
    assert decide(rule, reader(HEADER, sticky_cookie=False), {}, None, None)[1] is None


def test_jwt_and_cookie_parsing_reject_garbage() -> None:
    assert jwt_claim("not-a-jwt", "sub") is None
    assert jwt_claim("a.!!!.c", "sub") is None
    assert jwt_claim(_jwt({"sub": {"nested": 1}}), "sub") is None
    assert jwt_claim(_jwt({"sub": 42}), "sub") == "42"
    assert cookie_value("a=1; b=2", "b") == "2"
    assert cookie_value("ab=1", "b") is None
    assert cookie_value(None, "b") is None


def test_a_request_reads_its_jwt_once_for_key_user_and_tenant() -> None:
    source = StickySource(kind="jwt_claim", name="access_token", claim="sub", jwt_in="cookie")
    identity = IdentityReader.from_config([source], sticky_cookie=True)
    token = _jwt({"sub": "once-7", "tenant": "acme"})
    headers = {"cookie": f"access_token={token}"}
    jwt_claims.cache_clear()
    assert identity.sticky_key(headers, None) == "once-7"
    assert identity.user(headers) == "once-7"
    assert identity.tenant(headers) == "acme"
    info = jwt_claims.cache_info()
    assert (info.misses, info.hits) == (1, 2)  # decoded once, read three times
