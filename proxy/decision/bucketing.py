"""Sticky bucketing: a user key and a flag name map to one of 10,000 buckets.

MurmurHash3 (x86, 32-bit) of the key, seeded with the hash of the flag name, so
that the same user lands in unrelated buckets for different flags. The hash is
the same in every process, replica and restart (no Python ``hash()``, which is
salted per process). A bucket below ``threshold`` goes to ``new``; raising the
percent only adds buckets, so nobody moves from ``new`` back to ``legacy``.
"""

from __future__ import annotations

import secrets

import mmh3

BUCKETS = 10_000


def flag_seed(flag_name: str) -> int:
    """The per-flag hash seed (computed once per flag at config compile time)."""
    return int(mmh3.hash(flag_name, 0, signed=False))


def bucket_of(key: str, seed: int) -> int:
    """The bucket (0..9999) of a sticky key under a flag's seed."""
    return int(mmh3.hash(key, seed, signed=False)) % BUCKETS


def threshold_for(percent: float) -> int:
    """Buckets below this go to `new`: percent 12.34 -> 1234."""
    return round(percent * BUCKETS / 100)


def random_sticky_key() -> str:
    """A fresh key for a client that brought none (returned in the `turnout-id` cookie)."""
    return secrets.token_urlsafe(12)
