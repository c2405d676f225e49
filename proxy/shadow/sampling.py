"""Which requests are mirrored: a deterministic sample keyed on the request id.

The same request id (``x-request-id``, when the client or a load balancer sets
one) is always sampled the same way for a flag, so tests and operators can
reason about it; the seed differs from the traffic split's, so being shadowed
says nothing about which side serves you.
"""

from __future__ import annotations

from proxy.decision.bucketing import BUCKETS, bucket_of, flag_seed, threshold_for

_SHADOW_SALT = 0x5AD0
_CALIBRATE_SALT = 0xCA1B


def shadow_seed(flag: str) -> int:
    return flag_seed(flag) ^ _SHADOW_SALT


def calibrate_seed(flag: str) -> int:
    return flag_seed(flag) ^ _CALIBRATE_SALT


def sampled(request_id: str, seed: int, percent: float) -> bool:
    """True for ``percent`` % of request ids, always the same ones for a seed."""
    return sampled_below(request_id, seed, threshold_for(percent))


def sampled_below(request_id: str, seed: int, threshold: int) -> bool:
    """``sampled`` with the percent already turned into buckets (``threshold_for``)."""
    if threshold <= 0:
        return False
    return threshold >= BUCKETS or bucket_of(request_id, seed) < threshold
