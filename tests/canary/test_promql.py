"""The canary's numbers from Prometheus (pure): the queries, and the answers read back
into the numbers the local tap counts.

The property test plays requests the way the exchange counts them (the series
of ``observe/stats.py``, the fallback counters, the canary tap), renders the
exposition Turnout serves, and answers each query as Prometheus does without
extrapolation (``sum by`` of the difference between two scrapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from proxy.canary.promql import (
    PromAnswerError,
    count,
    histogram_buckets,
    interval_numbers,
    label_value,
    queries,
    shadow_numbers,
    vector,
    window,
)
from proxy.canary.runner import ShadowParity
from proxy.canary.tap import CanaryTap
from proxy.canary.window import ShadowNumbers
from proxy.exchange.exchange import Exchange
from proxy.observe.prometheus import ControlState, render
from proxy.observe.stats import DURATION_BOUNDS, Stats

FLAG = "user-api"
BOUNDS = [*(repr(b) for b in DURATION_BOUNDS), "+Inf"]
SIDES = ("legacy", "new")


def answer(rows: list[tuple[dict[str, str], str]]) -> dict[str, Any]:
    """An instant query's answer, as Prometheus' /api/v1/query sends it."""
    result = [{"metric": labels, "value": [1767225600.123, value]} for labels, value in rows]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


# -- the queries -------------------------------------------------------------------
def test_the_queries_sum_the_flags_series_over_the_window_by_what_the_judge_needs() -> None:
    asked = queries("user-api", 300)
    assert asked.requests == (
        'sum by (backend, code) (increase(turnout_requests_total{flag="user-api"}[300000ms]))'
    )
    assert asked.buckets == (
        "sum by (backend, le) "
        '(increase(turnout_request_duration_seconds_bucket{flag="user-api"}[300000ms]))'
    )
    assert asked.fallbacks == (
        "sum by (from_backend, to_backend, reason) "
        '(increase(turnout_fallbacks_total{flag="user-api"}[300000ms]))'
    )
    assert asked.shadow == (
        'sum by (result) (increase(turnout_shadow_requests_total{flag="user-api"}[300000ms]))'
    )


def test_a_flag_name_is_escaped_for_the_label_matcher_and_a_window_is_whole_ms() -> None:
    assert label_value('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert '{flag="x\\"}"}' in queries('x"}', 2.5).requests
    assert window(2.5) == "2500ms"
    assert window(0.0001) == "1ms"


# -- recorded answers ----------------------------------------------------------------
def cumulative(counts: list[int]) -> list[str]:
    total, out = 0, []
    for value in counts:
        total += value
        out.append(str(float(total)))
    return out


def bucket_rows(side: str, counts: list[int]) -> list[tuple[dict[str, str], str]]:
    return [
        ({"backend": side, "le": le}, value)
        for le, value in zip(BOUNDS, cumulative(counts), strict=True)
    ]


def test_an_answer_of_a_fleet_is_read_into_both_sides_numbers() -> None:
    # new: 95 served (5 of them 500s), 3 fallbacks to legacy on 503, 2 on a 404,
    # 4 failovers to legacy while new was ejected; legacy served 200 plus those.
    requests = vector(
        answer(
            [
                ({"backend": "new", "code": "200"}, "88.00000000000001"),
                ({"backend": "new", "code": "500"}, "5"),
                ({"backend": "new", "code": "503"}, "3"),
                ({"backend": "new", "code": "404"}, "2"),
                ({"backend": "legacy", "code": "200"}, "209"),
                ({"backend": "legacy", "code": "499"}, "1"),
            ]
        )
    )
    fallbacks = vector(
        answer(
            [
                ({"from_backend": "new", "to_backend": "legacy", "reason": "503"}, "3"),
                ({"from_backend": "new", "to_backend": "legacy", "reason": "404"}, "2"),
                ({"from_backend": "new", "to_backend": "legacy", "reason": "ejected"}, "4"),
            ]
        )
    )
    new_buckets = [0, 0, 10, 60, 20, 5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0]
    legacy_buckets = [0, 1, 30, 150, 20, 5, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    buckets = vector(
        answer(bucket_rows("new", new_buckets) + bucket_rows("legacy", legacy_buckets))
    )
    numbers = interval_numbers(requests, buckets, fallbacks)
    # new: 98 served + 4 ejected; errors: 5 + 3 (500, 503) + 2 (the 404s fell back) + 4
    assert (numbers.new.requests, numbers.new.errors) == (102, 14)
    # legacy: 210 served, 5 of them fallbacks that started on new; a 499 is no error
    assert (numbers.legacy.requests, numbers.legacy.errors) == (205, 0)
    assert numbers.new.buckets == new_buckets
    assert numbers.legacy.buckets == legacy_buckets


def test_extrapolated_values_round_to_counts_never_below_zero_or_decreasing() -> None:
    assert [count(v) for v in (2.4999, 2.5001, -0.7, 0.0)] == [2, 3, 0, 0]
    rows = [({"backend": "new", "le": le}, 0.0) for le in BOUNDS]
    rows[3] = ({"backend": "new", "le": BOUNDS[3]}, 10.6)
    rows[4] = ({"backend": "new", "le": BOUNDS[4]}, 10.2)  # extrapolation wobble
    for index in range(5, len(BOUNDS)):
        rows[index] = ({"backend": "new", "le": BOUNDS[index]}, 12.4)
    buckets = histogram_buckets(rows)
    assert buckets["new"] == [0, 0, 0, 11, 0, 1, *([0] * (len(BOUNDS) - 6))]
    assert buckets["legacy"] == [0] * len(BOUNDS)


def test_errors_never_exceed_requests() -> None:
    # legacy's only answers were fallbacks from new that failed again: 5xx, but not
    # requests that started on legacy
    requests = [
        ({"backend": "legacy", "code": "502"}, 3.0),
        ({"backend": "new", "code": "503"}, 3.0),
    ]
    fallbacks = [({"from_backend": "new", "to_backend": "legacy", "reason": "503"}, 3.0)]
    numbers = interval_numbers(requests, [], fallbacks)
    assert (numbers.legacy.requests, numbers.legacy.errors) == (0, 0)
    assert (numbers.new.requests, numbers.new.errors) == (3, 3)


def test_labels_of_no_side_and_no_series_at_all_are_zeros() -> None:
    requests = [({"backend": "elsewhere", "code": "500"}, 7.0)]
    numbers = interval_numbers(requests, [], [])
    assert [(s.requests, s.errors, sum(s.buckets)) for s in numbers.sides] == [(0, 0, 0)] * 2
    assert shadow_numbers([]) is None


def test_shadow_results_are_compared_and_mismatched_and_errors_are_left_out() -> None:
    results = [("match", "90.4"), ("mismatch", "9.6"), ("error", "3"), ("dropped", "7")]
    rows = vector(answer([({"result": result}, value) for result, value in results]))
    assert shadow_numbers(rows) == ShadowNumbers(compared=100, mismatched=10, errors=0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "parse error"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "instant vector"),
        ({"status": "success", "data": {"resultType": "vector"}}, "no result list"),
        (answer([({"backend": "new"}, "NaN")]), "not a finite number"),
        (answer([({"backend": "new"}, "many")]), "not a number"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
         "no metric or value"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_a_usable_vector_is_an_error(body: Any, error: str) -> None:
    with pytest.raises(PromAnswerError, match=error):
        vector(body)


def test_buckets_other_than_turnouts_are_an_error_not_judged() -> None:
    rows = [({"backend": "new", "le": le}, 1.0) for le in ("0.1", "0.5", "1", "+Inf")]
    with pytest.raises(PromAnswerError, match="new's latency buckets are not Turnout's"):
        histogram_buckets(rows)
    # A fleet in the middle of an upgrade that changed them: the union of both layouts.
    layout = [*bucket_rows("legacy", [1] * len(BOUNDS)), ({"backend": "legacy", "le": "0.3"}, "1")]
    mixed = vector(answer(layout))
    with pytest.raises(PromAnswerError, match="legacy's latency buckets"):
        histogram_buckets(mixed)
    with pytest.raises(PromAnswerError, match="not a bucket bound"):
        histogram_buckets([({"backend": "new", "le": "fast"}, 1.0)])


def test_le_spelled_as_prometheus_3_normalises_it_reads_the_same() -> None:
    spelled = [b.removesuffix(".0") if b.endswith(".0") else b for b in BOUNDS]
    counts = [1] * len(BOUNDS)
    rows = [
        ({"backend": "new", "le": le}, float(v))
        for le, v in zip(spelled, cumulative(counts), strict=True)
    ]
    assert histogram_buckets(rows)["new"] == counts


# -- numbers -> exposition -> Prometheus -> numbers ---------------------------------------
@dataclass
class Finished:
    """What the canary tap reads of a finished exchange."""

    backend: int
    fell_back: bool
    streamed_at: float
    started: float = 1.0


FAILED_STATUS = {"connect_error": 502, "timeout": 504, "reset": 502}
seconds = st.sampled_from([0.0005, 0.003, 0.02, 0.07, 0.3, 0.9, 3.0, 45.0, 120.0])
backends = st.sampled_from([0, 1])
plain = st.tuples(st.just("plain"), backends, st.sampled_from([200, 404, 499, 500, 503]), seconds)
fallback = st.tuples(
    st.just("fallback"),
    backends,
    st.sampled_from(["500", "503", "404", "connect_error", "timeout"]),
    st.sampled_from([200, 404]),  # a fallback's own 5xx answer: see the docstring of promql
    seconds,
    seconds,
)
ejected = st.tuples(st.just("ejected"), backends, st.sampled_from([200, 500]), seconds)
events = st.lists(st.one_of(plain, fallback, ejected), max_size=60)
shadows = st.lists(st.sampled_from(["match", "mismatch", "error", "dropped"]), max_size=30)


class Replica:
    """Counts requests as one Turnout does: its stats (what /metrics shows) and the tap."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.tap = CanaryTap()
        self.fallbacks = 0

    def _observe(self, backend: int, status: int, secs: float) -> None:
        self.stats.series_for("users", FLAG, SIDES[backend]).observe("GET", status, secs)

    def _moved(self, source: int, reason: str) -> None:
        key = (FLAG, SIDES[source], SIDES[1 - source], reason)
        self.stats.fallbacks[key] = self.stats.fallbacks.get(key, 0) + 1

    def _finished(self, backend: int, status: int, secs: float, fell_back: bool) -> None:
        done = Finished(backend, fell_back, streamed_at=1.0 + secs)
        self.tap.finished(cast(Exchange, done), "done", status)

    def play(self, event: tuple[Any, ...]) -> None:
        kind, backend = event[0], event[1]
        if kind == "plain":
            self._observe(backend, event[2], event[3])
            self._finished(backend, event[2], event[3], fell_back=False)
        elif kind == "ejected":  # decided for `backend`, served by the other
            self._moved(backend, "ejected")
            self._observe(1 - backend, event[2], event[3])
            self._finished(1 - backend, event[2], event[3], fell_back=False)
        else:
            reason, final = event[2], event[3]
            failed = int(reason) if reason.isdigit() else FAILED_STATUS[reason]
            self._observe(backend, failed, event[4])
            self._moved(backend, reason)
            self._observe(1 - backend, final, event[5])
            self._finished(1 - backend, final, event[5], fell_back=True)
            self.fallbacks += 1

    def exposition(self) -> str:
        return render(self.stats.snapshot(), ControlState()).decode()


def evaluate(expr: str, before: str, after: str) -> dict[str, Any]:
    """``sum by (L) (increase(M{flag=F}[w]))`` between two scrapes, as Prometheus answers
    it when the counters do not need extrapolating."""
    by = tuple(label.strip() for label in expr.split("(")[1].split(")")[0].split(","))
    metric = expr.split("increase(")[1].split("{")[0]

    def sums(text: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric and sample.labels.get("flag") == FLAG:
                    key = tuple(sample.labels[label] for label in by)
                    out[key] = out.get(key, 0.0) + sample.value
        return out

    start, end = sums(before), sums(after)
    return answer(
        [(dict(zip(by, key, strict=True)), repr(v - start.get(key, 0.0))) for key, v in end.items()]
    )


@settings(max_examples=60, deadline=None)
@given(earlier=events, interval=events, shadow_before=shadows, shadow_during=shadows)
def test_the_numbers_read_back_from_the_exposition_are_the_taps(
    earlier: list[tuple[Any, ...]],
    interval: list[tuple[Any, ...]],
    shadow_before: list[str],
    shadow_during: list[str],
) -> None:
    replica = Replica()
    parity = ShadowParity(replica.stats)
    for event in earlier:
        replica.play(event)
    for result in shadow_before:
        replica.stats.shadow[(FLAG, result)] = replica.stats.shadow.get((FLAG, result), 0) + 1
    before, ejected_before = replica.exposition(), _ejected(replica.stats)
    replica.tap.take()
    parity(FLAG)
    replica.fallbacks = 0

    for event in interval:
        replica.play(event)
    for result in shadow_during:
        replica.stats.shadow[(FLAG, result)] = replica.stats.shadow.get((FLAG, result), 0) + 1
    after = replica.exposition()
    local = replica.tap.take()
    for backend, failed_over in enumerate(_ejected(replica.stats)):
        local.add_failures(backend, failed_over - ejected_before[backend])

    asked = queries(FLAG, 300)
    rows = {name: vector(evaluate(expr, before, after)) for name, expr in asked.as_dict().items()}
    fleet = interval_numbers(rows["requests"], rows["buckets"], rows["fallbacks"])
    for side, (theirs, ours) in enumerate(zip(fleet.sides, local.sides, strict=True)):
        assert (theirs.requests, theirs.errors) == (ours.requests, ours.errors), SIDES[side]
        assert all(a >= b for a, b in zip(theirs.buckets, ours.buckets, strict=True))
    # Both attempts of a fallback are in the histograms; the tap keeps neither.
    extra = sum(map(sum, (s.buckets for s in fleet.sides))) - sum(
        map(sum, (s.buckets for s in local.sides))
    )
    assert extra == 2 * replica.fallbacks
    if not replica.fallbacks:
        assert [s.buckets for s in fleet.sides] == [s.buckets for s in local.sides]
    assert shadow_numbers(rows["shadow"]) == parity(FLAG)


def _ejected(stats: Stats) -> tuple[int, int]:
    return (
        stats.fallbacks.get((FLAG, "legacy", "new", "ejected"), 0),
        stats.fallbacks.get((FLAG, "new", "legacy", "ejected"), 0),
    )
