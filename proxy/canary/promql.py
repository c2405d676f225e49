"""A canary interval's numbers from Prometheus: the queries and the reading of their
answers (pure: no I/O; ``proxy.canary.prometheus_source`` sends the queries).

The series are the ones every Turnout exposes and the dashboard shows, summed
over replicas by Prometheus: ``turnout_requests_total``,
``turnout_request_duration_seconds_bucket``, ``turnout_fallbacks_total`` and
``turnout_shadow_requests_total``, each as ``increase()`` over the interval.

They are turned into the numbers the local tap (``proxy.canary.tap``) counts,
on the side a request *started* on. The exchange counts a fallback twice in
``turnout_requests_total``: the failed attempt on the side it left (with the
failed status: the reason's number, or a 5xx for an error kind) and the answer on
the side it went to. So, per side B:

- requests = requests served by B - fallbacks into B + failovers away from an
  ejected B (``reason="ejected"``: served by the other side, B's failures);
- errors = B's 5xx + fallbacks from B on a status below 500 (a covered 404: an
  error of B, counted with its own code) + failovers away from an ejected B.

Two differences with the local tap remain, because no series tells them apart:
a fallback's answer that is itself a 5xx is an error of the side that gave it
(the local tap counts it only against the side it left; errors are capped at
requests), and both attempts of a fallback are in the latency histograms (the
local tap keeps a fallback out of them). Failed shadow copies are not new's
errors here: ``turnout_shadow_requests_total{result="error"}`` does not say which
side failed.

``increase()`` extrapolates to the window's edges, so its values are not whole
numbers: each count is rounded to the nearest integer and never below zero; a
cumulative histogram is made non-decreasing before its buckets are taken apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.canary.window import IntervalNumbers, ShadowNumbers, SideNumbers
from proxy.observe.stats import DURATION_BOUNDS

SIDES = ("legacy", "new")
_STATUS_ERRORS = 500
_LE_BOUNDS = (*DURATION_BOUNDS, math.inf)


class PromAnswerError(ValueError):
    """A Prometheus answer that cannot be judged: its shape, a value, or a bucket layout."""


@dataclass(frozen=True)
class Queries:
    """The four instant queries for one flag and one window length."""

    requests: str
    buckets: str
    fallbacks: str
    shadow: str

    def as_dict(self) -> dict[str, str]:
        return {
            "requests": self.requests,
            "buckets": self.buckets,
            "fallbacks": self.fallbacks,
            "shadow": self.shadow,
        }


def label_value(value: str) -> str:
    """``value`` as a double-quoted PromQL string (for a label matcher)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def window(seconds: float) -> str:
    """A PromQL range of ``seconds``, in whole milliseconds (at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def queries(flag: str, seconds: float) -> Queries:
    """The queries of ``flag``'s numbers over the last ``seconds`` (at the query's time)."""
    matcher, span = f"{{flag={label_value(flag)}}}", window(seconds)

    def summed(by: str, metric: str) -> str:
        return f"sum by ({by}) (increase({metric}{matcher}[{span}]))"

    return Queries(
        requests=summed("backend, code", "turnout_requests_total"),
        buckets=summed("backend, le", "turnout_request_duration_seconds_bucket"),
        fallbacks=summed("from_backend, to_backend, reason", "turnout_fallbacks_total"),
        shadow=summed("result", "turnout_shadow_requests_total"),
    )


# -- reading the answers ---------------------------------------------------------
Row = tuple[Mapping[str, str], float]


def vector(answer: Any) -> list[Row]:
    """The (labels, value) rows of an instant query's JSON answer (``/api/v1/query``)."""
    if not isinstance(answer, dict):
        raise PromAnswerError("the answer is not a JSON object")
    if answer.get("status") != "success":
        error = answer.get("error") or answer.get("status")
        raise PromAnswerError(f"query failed: {error}")
    data = answer.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise PromAnswerError("the answer is not an instant vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise PromAnswerError("the answer has no result list")
    return [_row(item) for item in result]


def _row(item: Any) -> Row:
    if not isinstance(item, dict):
        raise PromAnswerError(f"a result is not an object: {item!r}")
    metric, value = item.get("metric"), item.get("value")
    if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
        raise PromAnswerError(f"a result has no metric or value: {item!r}")
    try:
        number = float(value[1])
    except (TypeError, ValueError):
        raise PromAnswerError(f"not a number: {value[1]!r}") from None
    if not math.isfinite(number):
        raise PromAnswerError(f"not a finite number: {value[1]!r}")
    return {str(k): str(v) for k, v in metric.items()}, number


def count(value: float) -> int:
    """An extrapolated ``increase()`` as a count: the nearest integer, never below 0."""
    return max(0, round(value))


def _failed_status_is_error(reason: str) -> bool:
    """Whether a fallback's failed attempt is already a 5xx in ``turnout_requests_total``:
    a status reason is its own status, an error kind (timeout, ...) is answered 5xx."""
    return not reason.isdigit() or int(reason) >= _STATUS_ERRORS


@dataclass
class _Side:
    served: float = 0.0
    errors: float = 0.0
    moved_in: float = 0.0
    failures: float = 0.0  # fallbacks away on a status below 500, failovers when ejected
    ejected: float = 0.0

    def numbers(self, buckets: list[int]) -> SideNumbers:
        requests = count(self.served - self.moved_in + self.ejected)
        errors = min(requests, count(self.errors + self.failures))
        return SideNumbers(requests, errors, buckets)


def interval_numbers(
    requests: list[Row], buckets: list[Row], fallbacks: list[Row]
) -> IntervalNumbers:
    """The interval's numbers of both sides, from the three queries' rows."""
    sides = {name: _Side() for name in SIDES}
    for labels, value in requests:
        side = sides.get(labels.get("backend", ""))
        if side is None:
            continue
        side.served += value
        if _is_error_code(labels.get("code", "")):
            side.errors += value
    for labels, value in fallbacks:
        _fallback(sides, labels, value)
    histograms = histogram_buckets(buckets)
    legacy, new = (sides[name].numbers(histograms[name]) for name in SIDES)
    return IntervalNumbers((legacy, new))


def _is_error_code(code: str) -> bool:
    return code.isdigit() and int(code) >= _STATUS_ERRORS


def _fallback(sides: dict[str, _Side], labels: Mapping[str, str], value: float) -> None:
    source, target = (
        sides.get(labels.get("from_backend", "")),
        sides.get(labels.get("to_backend", "")),
    )
    reason = labels.get("reason", "")
    if source is None or target is None:
        return
    if reason == "ejected":  # served (and counted) by the other side: the source's failure
        source.ejected += value
        source.failures += value
        return
    target.moved_in += value
    if not _failed_status_is_error(reason):
        source.failures += value


def histogram_buckets(rows: list[Row]) -> dict[str, list[int]]:
    """Per side, the per-bucket counts over ``DURATION_BOUNDS`` (+Inf last) from the
    cumulative ``le`` rows; a side without rows has empty buckets. A layout other than
    ``DURATION_BOUNDS`` is an error: its buckets would be judged against the wrong bounds."""
    cumulative: dict[str, dict[float, float]] = {name: {} for name in SIDES}
    for labels, value in rows:
        side = cumulative.get(labels.get("backend", ""))
        if side is None:
            continue
        le = _bound(labels.get("le"))
        side[le] = side.get(le, 0.0) + value
    return {name: _per_bucket(name, by_le) for name, by_le in cumulative.items()}


def _bound(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        raise PromAnswerError(f"not a bucket bound: le={text!r}") from None


def _per_bucket(side: str, by_le: dict[float, float]) -> list[int]:
    if not by_le:
        return [0] * len(_LE_BOUNDS)
    if sorted(by_le) != list(_LE_BOUNDS):
        found = ", ".join(f"{le:g}" for le in sorted(by_le))
        raise PromAnswerError(
            f"{side}'s latency buckets are not Turnout's (le = {found}): "
            "every replica must run a version with the same buckets"
        )
    buckets, below = [], 0
    for le in _LE_BOUNDS:
        total = max(below, count(by_le[le]))  # cumulative: never decreasing
        buckets.append(total - below)
        below = total
    return buckets


def shadow_numbers(rows: list[Row]) -> ShadowNumbers | None:
    """Shadow comparisons in the interval (None without any), as ``ShadowParity`` gives
    them; failed copies are not counted (see the module's docstring)."""
    results = {labels.get("result", ""): value for labels, value in rows}
    mismatched = count(results.get("mismatch", 0.0))
    compared = count(results.get("match", 0.0)) + mismatched
    return ShadowNumbers(compared, mismatched) if compared > 0 else None
