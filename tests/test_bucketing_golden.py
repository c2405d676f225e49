"""Golden bucket numbers: which users land on `new` must not change under us.

The bucketing contract is that a user's side depends only on (sticky key, flag
name, percent): the same in every process, replica, restart *and release*. It
is computed with mmh3 (MurmurHash3 x86 32-bit), so an mmh3 release that changed
its output (or its str -> bytes encoding), or a change to how the seed is
derived from the flag name, would silently move users between `legacy` and
`new` on upgrade. These values were computed once from the implementation as
it was when this file was written and are hard-coded on purpose: if this test
fails, users would be moved; do not "fix" the numbers, fix the dependency or
the code (or treat it as a deliberate, announced re-bucketing).
"""

from __future__ import annotations

import mmh3
import pytest

from proxy.config.flags import FlagConfig
from proxy.config.models import StickySource
from proxy.decision.bucketing import BUCKETS, bucket_of, flag_seed, threshold_for
from proxy.decision.decide import decide
from proxy.decision.flag_rule import FlagRule
from proxy.decision.identity import IdentityReader
from proxy.decision.sides import NEW

_IDENTITY = IdentityReader.from_config([StickySource(kind="header", name="x-user-id")], True)


def goes_to_new(key: str, flag: str, percent: float) -> bool:
    """The side ``decide`` picks for a user whose sticky key is ``key``."""
    rule = FlagRule.from_config(flag, FlagConfig(percent=percent))
    backend, assigned = decide(rule, _IDENTITY, {"x-user-id": key}, None, None)
    assert assigned is None  # the key came from the header: no cookie to set
    return backend == NEW

# flag name -> flag_seed(flag name)
GOLDEN_SEEDS = {
    "user-api": 1111147952,
    "public-api": 906619364,
    "orders-api": 2079384767,
    "account-api": 2910521982,
}

# (sticky key, flag name) -> bucket
GOLDEN_BUCKETS = {
    ("user-1", "user-api"): 3576,
    ("user-2", "user-api"): 6943,
    ("user-10", "user-api"): 1743,
    ("user-42", "user-api"): 6502,
    ("vip-42", "user-api"): 5370,
    ("user-1", "orders-api"): 3420,
    ("user-1", "public-api"): 5225,
    ("user-1", "account-api"): 5423,
    ("203.0.113.7", "user-api"): 6933,  # a client_ip key
    ("4f1c2b9e-8d3a-4e2f-9c1d-7a6b5e4d3c2b", "account-api"): 2168,  # a JWT `sub`
    ("J\u00fcrgen", "user-api"): 1659,  # non-ASCII: hashed as UTF-8
    ("turnout-id-xyz", "orders-api"): 4085,  # a `turnout-id` cookie value
    ("a" * 200, "account-api"): 9993,  # longer than any block size
}


def test_bucket_count_is_ten_thousand() -> None:
    # Percent steps of 0.01 map onto exactly one bucket each.
    assert BUCKETS == 10_000


def test_mmh3_matches_the_published_murmurhash3_value() -> None:
    # The reference value of MurmurHash3_x86_32("foo", seed 0), as documented by mmh3.
    assert mmh3.hash("foo", 0) == -156908512
    assert mmh3.hash("foo", 0, signed=False) == 4138058784


@pytest.mark.parametrize(("flag", "seed"), sorted(GOLDEN_SEEDS.items()))
def test_flag_seed_is_unchanged(flag: str, seed: int) -> None:
    assert flag_seed(flag) == seed


@pytest.mark.parametrize(("key", "flag", "bucket"), [(*k, b) for k, b in GOLDEN_BUCKETS.items()])
def test_bucket_is_unchanged(key: str, flag: str, bucket: int) -> None:
    assert bucket_of(key, flag_seed(flag)) == bucket


def test_side_at_a_fixed_percent() -> None:
    # user-api at 30 % (as in the demo config): buckets 0..2999 go to new.
    assert threshold_for(30) == 3000
    assert goes_to_new("user-10", "user-api", 30)  # bucket 1743
    assert goes_to_new("J\u00fcrgen", "user-api", 30)  # bucket 1659
    assert not goes_to_new("user-1", "user-api", 30)  # bucket 3576
    assert not goes_to_new("user-2", "user-api", 30)  # bucket 6943
    # Raising the percent past a user's bucket moves them to new, never back.
    assert not goes_to_new("user-1", "user-api", 35.76)
    assert goes_to_new("user-1", "user-api", 35.77)
    assert goes_to_new("user-10", "user-api", 35.77)


@pytest.mark.parametrize("percent", [0, 0.01, 1, 17.43, 17.44, 50, 99.99, 100])
def test_every_golden_key_is_on_the_documented_side(percent: float) -> None:
    for (key, flag), bucket in GOLDEN_BUCKETS.items():
        assert goes_to_new(key, flag, percent) is (bucket < round(percent * 100))
