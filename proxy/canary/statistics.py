"""The canary's statistical tests, pure functions of counts and fixed-bucket histograms.

Why not scipy: it is a large dependency (tens of MB, a slow import) for three
formulas. Both tests here are the textbook normal approximations, and with the
per-interval counts a canary judges (``min_requests`` and more) the normal
approximation is what scipy itself uses for Mann-Whitney (its ``asymptotic``
method, with the same tie and continuity corrections). ``tests/canary``
checks them against values computed by hand.

Every p-value here is **one-sided**, for "new is worse than legacy": a canary
only fails a step for being worse, never for being better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from proxy.observe.stats import DURATION_BOUNDS, quantile


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class TestResult:
    statistic: float
    z: float
    p_value: float
    """One-sided: the probability of a difference at least this bad by chance alone."""

    def significant(self, confidence: float) -> bool:
        return self.p_value < 1.0 - confidence


def proportion_increase(
    bad_new: int, n_new: int, bad_old: int, n_old: int, margin: float = 0.0
) -> TestResult:
    """Two-proportion z-test of H1: p_new - p_old > margin (unpooled standard error).

    The statistic is the observed difference. With no variance at all (both rates
    0 or 1) the difference itself decides: z = ±inf.
    """
    if n_new <= 0 or n_old <= 0:
        return TestResult(0.0, 0.0, 1.0)
    p_new, p_old = bad_new / n_new, bad_old / n_old
    difference = p_new - p_old
    variance = p_new * (1 - p_new) / n_new + p_old * (1 - p_old) / n_old
    excess = difference - margin
    if variance <= 0.0:
        z = math.inf if excess > 0 else -math.inf if excess < 0 else 0.0
        return TestResult(difference, z, 0.0 if excess > 0 else 1.0)
    z = excess / math.sqrt(variance)
    return TestResult(difference, z, normal_sf(z))


def share_above(bad: float, n: int, expected: float) -> TestResult:
    """One-sample proportion test of H1: share > expected (e.g. 1 % above a p99 limit)."""
    if n <= 0 or not 0.0 < expected < 1.0:
        return TestResult(0.0, 0.0, 1.0)
    share = bad / n
    z = (share - expected) / math.sqrt(expected * (1 - expected) / n)
    return TestResult(share, z, normal_sf(z))


def mann_whitney_greater(new: list[int], old: list[int]) -> TestResult:
    """Mann-Whitney U of H1: new's values tend to be larger than old's, from two
    histograms over the same buckets.

    Every bucket is one group of ties (its values are indistinguishable), so
    ``U = sum of new_b * (old below b + old_b / 2)``; the variance carries the tie
    correction and z the continuity correction of 0.5, as scipy's asymptotic
    method does. All values in one bucket: no evidence either way (p = 1).
    """
    n1, n2 = sum(new), sum(old)
    if n1 == 0 or n2 == 0:
        return TestResult(0.0, 0.0, 1.0)
    u = 0.0
    below = 0
    for a, b in zip(new, old, strict=True):
        u += a * (below + b / 2.0)
        below += b
    total = n1 + n2
    ties = sum((a + b) ** 3 - (a + b) for a, b in zip(new, old, strict=True))
    variance = n1 * n2 / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0.0:
        return TestResult(u, 0.0, 1.0)
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    return TestResult(u, z, normal_sf(z))


def median_shift(new: list[int], old: list[int]) -> float | None:
    """How much larger new's median is than old's, as a fraction (0.3 = 30 % slower),
    both interpolated inside their bucket; None without data or with a zero median."""
    new_median, old_median = quantile(new, 0.5), quantile(old, 0.5)
    if new_median is None or old_median is None or old_median <= 0.0:
        return None
    return new_median / old_median - 1.0


def count_slower_than(buckets: list[int], limit: float) -> float:
    """How many observations lie above ``limit`` seconds, counting a bucket that
    straddles the limit in proportion (values spread evenly in it)."""
    above = 0.0
    lower = 0.0
    for index, count in enumerate(buckets):
        upper = DURATION_BOUNDS[index] if index < len(DURATION_BOUNDS) else math.inf
        if count:
            if lower >= limit:
                above += count
            elif upper > limit:
                above += count * (upper - limit) / (upper - lower) if upper != math.inf else count
        lower = upper
    return above
