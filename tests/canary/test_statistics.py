"""The canary's statistics against values computed by hand (and by brute force)."""

from __future__ import annotations

import math
import random

import pytest

from proxy.canary.statistics import (
    count_slower_than,
    mann_whitney_greater,
    median_shift,
    normal_sf,
    proportion_increase,
    share_above,
)
from proxy.observe.stats import DURATION_BOUNDS

N_BUCKETS = len(DURATION_BOUNDS) + 1


def histogram(**counts: int) -> list[int]:
    """``histogram(b1=2, b3=5)``: 2 observations in bucket 1, 5 in bucket 3."""
    buckets = [0] * N_BUCKETS
    for name, count in counts.items():
        buckets[int(name[1:])] = count
    return buckets


def test_normal_tail_matches_the_table() -> None:
    assert normal_sf(0.0) == pytest.approx(0.5)
    assert normal_sf(1.959964) == pytest.approx(0.025, abs=1e-6)
    assert normal_sf(2.053749) == pytest.approx(0.02, abs=1e-6)
    assert normal_sf(-1.959964) == pytest.approx(0.975, abs=1e-6)


def test_mann_whitney_of_a_small_tied_example_computed_by_hand() -> None:
    # new = {1, 2, 2}, old = {0, 0, 1} as bucket indexes. Mid-ranks: the two 0s
    # share 1.5, the two 1s share 3.5, the two 2s share 5.5, so new's rank sum is
    # 3.5 + 2 * 5.5 = 14.5 and U = 14.5 - 3 * 4 / 2 = 8.5. Ties: three groups of 2,
    # sum(t^3 - t) = 18; var = 3 * 3 / 12 * (7 - 18 / 30) = 4.8.
    # z = (8.5 - 4.5 - 0.5) / sqrt(4.8) (continuity corrected) = 1.5975; scipy's
    # mannwhitneyu([1, 2, 2], [0, 0, 1], alternative="greater", method="asymptotic")
    # gives p = 0.05507.
    result = mann_whitney_greater(histogram(b1=1, b2=2), histogram(b0=2, b1=1))
    assert result.statistic == 8.5
    assert result.z == pytest.approx(3.5 / math.sqrt(4.8))
    assert result.p_value == pytest.approx(0.05507, abs=1e-5)
    assert not result.significant(0.98)


def test_mann_whitney_u_equals_the_pair_count_of_the_expanded_samples() -> None:
    rng = random.Random(7)
    for _ in range(20):
        new = [rng.randrange(0, 6) for _ in range(N_BUCKETS)]
        old = [rng.randrange(0, 6) for _ in range(N_BUCKETS)]
        xs = [i for i, n in enumerate(new) for _ in range(n)]
        ys = [i for i, n in enumerate(old) for _ in range(n)]
        pairs = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in xs for y in ys)
        assert mann_whitney_greater(new, old).statistic == pytest.approx(pairs)


def test_mann_whitney_direction_and_degenerate_cases() -> None:
    slow, fast = histogram(b6=200, b7=20), histogram(b5=200, b6=20)
    assert mann_whitney_greater(slow, fast).significant(0.98)
    assert mann_whitney_greater(fast, slow).p_value > 0.98  # faster is never "worse"
    same = mann_whitney_greater(histogram(b3=50), histogram(b3=500))  # all tied
    assert (same.z, same.p_value) == (0.0, 1.0)
    assert mann_whitney_greater(histogram(), histogram(b3=5)).p_value == 1.0


def test_two_proportion_test_computed_by_hand() -> None:
    # new 10/100, legacy 5/1000, margin 0.5 points: excess = 0.1 - 0.005 - 0.005 = 0.09;
    # var = 0.1 * 0.9 / 100 + 0.005 * 0.995 / 1000 = 0.000904975; z = 2.9917, p = 0.00139.
    result = proportion_increase(10, 100, 5, 1000, margin=0.005)
    assert result.statistic == pytest.approx(0.095)
    assert result.z == pytest.approx(0.09 / math.sqrt(0.000904975))
    assert result.p_value == pytest.approx(0.001387, abs=2e-6)
    assert result.significant(0.98)


def test_two_proportion_small_counts_are_not_significant() -> None:
    # 3 errors in 200 (1.5%) against 0 in 2000 is 1 point above legacy: z = 0.01 /
    # sqrt(0.015 * 0.985 / 200) = 1.164, p = 0.122: noise at 98 %.
    result = proportion_increase(3, 200, 0, 2000, margin=0.005)
    assert result.z == pytest.approx(0.01 / math.sqrt(0.015 * 0.985 / 200))
    assert not result.significant(0.98)


def test_two_proportion_without_variance_decides_on_the_difference() -> None:
    assert proportion_increase(0, 100, 0, 1000, margin=0.005).p_value == 1.0
    assert proportion_increase(100, 100, 0, 1000, margin=0.005).p_value == 0.0
    assert proportion_increase(1, 0, 0, 10).p_value == 1.0  # no data: never significant


def test_share_above_an_expected_share() -> None:
    # 5 of 100 above a limit that 1 % should exceed: z = 0.04 / sqrt(0.01 * 0.99 / 100).
    result = share_above(5, 100, 0.01)
    assert result.z == pytest.approx(0.04 / math.sqrt(0.0099 / 100))
    assert result.significant(0.98)
    assert not share_above(2, 100, 0.01).significant(0.98)


def test_count_slower_than_spreads_a_straddling_bucket_evenly() -> None:
    # bucket 7 is (0.1, 0.25]: a limit of 0.175 s cuts it in half.
    assert DURATION_BOUNDS[6:8] == (0.1, 0.25)
    assert count_slower_than(histogram(b7=10), 0.175) == pytest.approx(5.0)
    assert count_slower_than(histogram(b6=4, b8=3, b15=2), 0.25) == 5.0  # +Inf bucket counts
    assert count_slower_than(histogram(b6=4), 0.25) == 0.0


def test_median_shift_from_the_histograms() -> None:
    # all of legacy in (0.025, 0.05]: median 0.0375; all of new in (0.05, 0.1]: 0.075.
    assert median_shift(histogram(b6=10), histogram(b5=10)) == pytest.approx(1.0)
    assert median_shift(histogram(b5=10), histogram(b5=10)) == pytest.approx(0.0)
    assert median_shift(histogram(), histogram(b5=10)) is None
