"""Counters, snapshot merging, quantiles and Prometheus rendering, without sockets."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observe.prometheus import ControlState, render
from proxy.observe.stats import DURATION_BOUNDS, Stats, merge_snapshots, quantile


def _filled(requests: int, seconds: float) -> Stats:
    stats = Stats()
    series = stats.series_for("users", "user-api", "new")
    for _ in range(requests):
        series.observe("GET", 200, seconds)
    series.observe("BREW", 500, seconds)
    stats.count_upstream_error("new", "5xx")
    return stats


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_merged_snapshots_add_counters_and_histograms() -> None:
    merged = merge_snapshots([_filled(3, 0.004).snapshot(), _filled(5, 0.2).snapshot()])
    samples = _samples(render(merged, ControlState(flag_percent={"user-api": 12.5})))
    labels = (
        ("backend", "new"),
        ("code", "200"),
        ("flag", "user-api"),
        ("method", "GET"),
        ("route", "users"),
    )
    assert samples[("turnout_requests_total", labels)] == 8
    other = (
        ("backend", "new"),
        ("code", "500"),
        ("flag", "user-api"),
        ("method", "OTHER"),
        ("route", "users"),
    )
    assert samples[("turnout_requests_total", other)] == 2
    series = (("backend", "new"), ("flag", "user-api"), ("route", "users"))
    assert samples[("turnout_request_duration_seconds_count", series)] == 10
    le_5ms = (*series[:2], ("le", "0.005"), series[2])
    assert samples[("turnout_request_duration_seconds_bucket", le_5ms)] == 4
    assert samples[("turnout_upstream_errors_total", (("backend", "new"), ("kind", "5xx")))] == 2
    assert samples[("turnout_flag_percent", (("flag", "user-api"),))] == 12.5
    assert samples[("turnout_backend_up", (("backend", "legacy"),))] == 1


def test_backend_is_up_only_if_every_worker_sees_it_up() -> None:
    a, b = Stats(), Stats()
    b.backend_up["new"] = 0
    merged = merge_snapshots([a.snapshot(), b.snapshot()])
    assert merged["backend_up"] == {"legacy": 1, "new": 0}


def test_quantile_interpolates_within_the_bucket() -> None:
    buckets = [0] * (len(DURATION_BOUNDS) + 1)
    buckets[DURATION_BOUNDS.index(0.1)] = 100  # all in (0.05, 0.1]
    assert quantile(buckets, 0.5) == pytest.approx(0.075)
    assert quantile(buckets, 0.99) == pytest.approx(0.05 + 0.05 * 0.99)
    assert quantile([0] * len(buckets), 0.99) is None
    buckets[-1] = 1000  # above the largest bound
    assert quantile(buckets, 0.99) == DURATION_BOUNDS[-1]


def test_merged_snapshots_add_the_proxy_overhead_of_every_worker() -> None:
    workers = [Stats(), Stats()]
    workers[0].overhead.observe(0.0003)
    workers[1].overhead.observe(0.0003)
    workers[1].overhead.observe(0.2)
    samples = _samples(render(merge_snapshots([w.snapshot() for w in workers]), ControlState()))
    assert samples[("turnout_proxy_overhead_seconds_count", ())] == 3
    assert samples[("turnout_proxy_overhead_seconds_bucket", (("le", "0.0005"),))] == 2
    assert samples[("turnout_proxy_overhead_seconds_sum", ())] == pytest.approx(0.2006)


def test_worker_restarts_are_a_counter_that_reads_zero_without_workers() -> None:
    single = _samples(render(Stats().snapshot(), ControlState()))
    assert single[("turnout_worker_restarts_total", ())] == 0
    supervised = {**Stats().snapshot(), "worker_restarts": 3}
    assert _samples(render(supervised, ControlState()))[("turnout_worker_restarts_total", ())] == 3
