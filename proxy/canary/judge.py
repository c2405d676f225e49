"""The verdict on one canary interval: new against absolute limits and against legacy.

A pure function of the flag's ``canary`` config and the interval's numbers
(requests that failed over away from an ejected new are already among new's
failed requests, see ``IntervalNumbers.add_failures``).
Each check passes, fails or is skipped (no data for it, or not configured);
every check keeps its numbers so that `turnout status`, the log and the
webhook can say *why*. Fewer than ``min_requests`` on new makes the whole
interval inconclusive: the checks are still computed and shown, but decide
nothing.

The checks:

- ``error_rate``: new's error share above ``max_error_rate``.
- ``error_rate_increase``: new's error share above legacy's plus
  ``max_error_rate_increase``, significant at ``judge.confidence``
  (two-proportion z-test), so noise on small counts fails nothing.
- ``p99``: new's p99 (from the histogram) above ``max_p99``.
- ``p99_increase``: more than 1 % of new's requests slower than legacy's p99
  plus ``max_p99_increase``, significant at ``judge.confidence``. A p99 of a
  few hundred requests is nearly the single slowest one; testing the share
  above the limit keeps one slow request from failing a step. Needs
  ``min_requests`` on legacy too.
- ``latency``: new's latency distribution above legacy's by a Mann-Whitney U
  test on the two histograms (significant at ``judge.confidence``) **and**
  new's median more than ``judge.min_effect`` above legacy's.
- ``mismatch_rate``: shadow mismatches among compared shadows above
  ``max_mismatch_rate``; skipped without shadow comparisons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from proxy.canary.statistics import (
    count_slower_than,
    mann_whitney_greater,
    median_shift,
    proportion_increase,
    share_above,
)
from proxy.canary.window import IntervalNumbers, ShadowNumbers, SideNumbers
from proxy.config.flags import Canary
from proxy.observe.stats import quantile

CheckResult = Literal["pass", "fail", "skipped"]
VerdictResult = Literal["pass", "fail", "inconclusive"]
Numbers = dict[str, Any]


@dataclass(frozen=True)
class Check:
    name: str
    result: CheckResult
    numbers: Numbers = field(default_factory=dict)
    note: str = ""
    """Why it failed or was skipped, in words with the numbers."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "result": self.result,
            "numbers": self.numbers,
            "note": self.note,
        }


@dataclass(frozen=True)
class Verdict:
    result: VerdictResult
    checks: tuple[Check, ...]
    new: Numbers
    legacy: Numbers
    reason: str = ""
    """For a failure: the failing checks' notes; for inconclusive: why."""
    source: str = "local"
    """Where the numbers came from: ``local`` (this process) or ``prometheus`` (the fleet)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "reason": self.reason,
            "source": self.source,
            "new": self.new,
            "legacy": self.legacy,
            "checks": [check.to_json() for check in self.checks],
        }


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _ms(value: float) -> str:
    return f"{value * 1000:.1f}ms"


def _rate(side: SideNumbers) -> float:
    return side.errors / side.requests if side.requests else 0.0


def _side_summary(side: SideNumbers) -> Numbers:
    return {
        "requests": side.requests,
        "errors": side.errors,
        "error_rate": _rate(side),
        "p50_seconds": quantile(side.buckets, 0.5),
        "p99_seconds": quantile(side.buckets, 0.99),
    }


@dataclass(frozen=True)
class _Inputs:
    canary: Canary
    new: SideNumbers
    legacy: SideNumbers
    shadow: ShadowNumbers | None

    @property
    def confidence(self) -> float:
        return self.canary.judge.confidence


def _error_rate(inputs: _Inputs) -> Check:
    rate, limit = _rate(inputs.new), inputs.canary.max_error_rate / 100
    numbers = {"new": rate, "limit": limit, "errors": inputs.new.errors}
    if rate > limit:
        return Check(
            "error_rate", "fail", numbers, f"new's error rate {_pct(rate)} > {_pct(limit)}"
        )
    return Check("error_rate", "pass", numbers)


def _error_rate_increase(inputs: _Inputs) -> Check:
    if inputs.canary.max_error_rate_increase is None:
        return Check("error_rate_increase", "skipped", note="not configured")
    new, legacy = inputs.new, inputs.legacy
    if legacy.requests == 0:
        return Check("error_rate_increase", "skipped", note="no legacy traffic")
    margin = inputs.canary.max_error_rate_increase / 100
    test = proportion_increase(new.errors, new.requests, legacy.errors, legacy.requests, margin)
    numbers = {
        "new": _rate(new),
        "legacy": _rate(legacy),
        "margin": margin,
        "z": _finite(test.z),
        "p_value": test.p_value,
    }
    if test.significant(inputs.confidence):
        note = (
            f"new's error rate {_pct(_rate(new))} exceeds legacy's {_pct(_rate(legacy))} "
            f"by more than {_pct(margin)} (p={test.p_value:.4f})"
        )
        return Check("error_rate_increase", "fail", numbers, note)
    return Check("error_rate_increase", "pass", numbers)


def _p99(inputs: _Inputs) -> Check:
    p99, limit = quantile(inputs.new.buckets, 0.99), inputs.canary.max_p99
    if p99 is None:
        return Check("p99", "skipped", note="no latency observed")
    numbers = {"new": p99, "limit": limit}
    if p99 > limit:
        return Check("p99", "fail", numbers, f"new's p99 {_ms(p99)} > {_ms(limit)}")
    return Check("p99", "pass", numbers)


def _p99_increase(inputs: _Inputs) -> Check:
    increase = inputs.canary.max_p99_increase
    if increase is None:
        return Check("p99_increase", "skipped", note="not configured")
    legacy_p99 = quantile(inputs.legacy.buckets, 0.99)
    new_count = sum(inputs.new.buckets)
    if legacy_p99 is None or sum(inputs.legacy.buckets) < inputs.canary.min_requests:
        return Check("p99_increase", "skipped", note="too little legacy traffic")
    limit = legacy_p99 * (1 + increase / 100)
    slower = count_slower_than(inputs.new.buckets, limit)
    test = share_above(slower, new_count, 0.01)
    numbers = {
        "new": quantile(inputs.new.buckets, 0.99),
        "legacy": legacy_p99,
        "limit": limit,
        "share_slower": test.statistic,
        "z": _finite(test.z),
        "p_value": test.p_value,
    }
    if test.significant(inputs.confidence):
        note = (
            f"{_pct(test.statistic)} of new's requests are slower than legacy's p99 "
            f"{_ms(legacy_p99)} + {increase:g}% (p={test.p_value:.4f})"
        )
        return Check("p99_increase", "fail", numbers, note)
    return Check("p99_increase", "pass", numbers)


def _latency(inputs: _Inputs) -> Check:
    new, legacy = inputs.new.buckets, inputs.legacy.buckets
    if not sum(legacy) or not sum(new):
        return Check("latency", "skipped", note="no latency observed on one side")
    test = mann_whitney_greater(new, legacy)
    shift = median_shift(new, legacy)
    min_effect = inputs.canary.judge.min_effect / 100
    numbers = {
        "u": test.statistic,
        "z": _finite(test.z),
        "p_value": test.p_value,
        "median_shift": shift,
        "min_effect": min_effect,
    }
    if test.significant(inputs.confidence) and shift is not None and shift > min_effect:
        note = (
            f"new is slower than legacy: median +{shift * 100:.0f}% "
            f"(Mann-Whitney p={test.p_value:.4f})"
        )
        return Check("latency", "fail", numbers, note)
    return Check("latency", "pass", numbers)


def _mismatch_rate(inputs: _Inputs) -> Check:
    limit, shadow = inputs.canary.max_mismatch_rate, inputs.shadow
    if limit is None:
        return Check("mismatch_rate", "skipped", note="not configured")
    if shadow is None or shadow.compared == 0:
        return Check("mismatch_rate", "skipped", note="no shadow comparisons")
    rate = shadow.mismatched / shadow.compared
    numbers = {"rate": rate, "limit": limit / 100, "compared": shadow.compared}
    if rate > limit / 100:
        note = f"shadow mismatch rate {_pct(rate)} > {_pct(limit / 100)}"
        return Check("mismatch_rate", "fail", numbers, note)
    return Check("mismatch_rate", "pass", numbers)


_CHECKS: tuple[Callable[[_Inputs], Check], ...] = (
    _error_rate,
    _error_rate_increase,
    _p99,
    _p99_increase,
    _latency,
    _mismatch_rate,
)


def _finite(value: float) -> float | None:
    """JSON has no infinity: an infinite z (no variance at all) is reported as null."""
    return value if abs(value) != float("inf") else None


def without_numbers(reason: str, source: str) -> Verdict:
    """An inconclusive verdict for an interval whose numbers could not be had."""
    empty = _side_summary(SideNumbers())
    return Verdict("inconclusive", (), empty, dict(empty), reason=reason, source=source)


def judge_interval(
    canary: Canary, numbers: IntervalNumbers, shadow: ShadowNumbers | None = None
) -> Verdict:
    """The verdict on one interval of one flag."""
    new = numbers.new
    if shadow is not None and shadow.errors:
        # Failed mirrored requests to new are new's failures too.
        new = SideNumbers(new.requests + shadow.errors, new.errors + shadow.errors, new.buckets)
    inputs = _Inputs(canary, new, numbers.legacy, shadow)
    checks = tuple(check(inputs) for check in _CHECKS)
    summary = (_side_summary(new), _side_summary(numbers.legacy))
    if new.requests < canary.min_requests:
        reason = f"not enough traffic: {new.requests} requests on new < {canary.min_requests}"
        return Verdict("inconclusive", checks, *summary, reason=reason)
    failed = [check.note for check in checks if check.result == "fail"]
    if failed:
        return Verdict("fail", checks, *summary, reason="; ".join(failed))
    return Verdict("pass", checks, *summary)
