"""Fallback policy, fallback budget and backend health: pure rules, no sockets."""

from __future__ import annotations

from proxy.config.models import Fallback, HealthCheck, OutlierDetection
from proxy.resilience.fallback import FallbackBudget, FallbackPolicy
from proxy.resilience.health import BackendHealth, HealthRegistry

POLICY = FallbackPolicy.from_config(Fallback())  # on: connect_error, timeout, 502, 503, 504


def test_connect_error_replays_any_method_other_failures_only_safe_ones() -> None:
    assert POLICY.covers_error("connect_error", "POST")
    assert POLICY.covers_error("timeout", "GET")
    assert not POLICY.covers_error("timeout", "POST")
    assert not POLICY.covers_error("reset", "GET")  # not listed by default
    assert POLICY.covers_status(503, "GET")
    assert not POLICY.covers_status(503, "POST")
    assert not POLICY.covers_status(500, "GET")


def test_budget_caps_fallbacks_to_its_share_of_the_window() -> None:
    budget = FallbackBudget(0.2)
    granted = 0
    for i in range(1000):
        now = 1000.0 + i * 0.005  # 200 requests per second, 5 s
        budget.count_request(now)
        granted += budget.try_spend(now)
    assert 190 <= granted <= 200


def test_budget_window_slides() -> None:
    budget = FallbackBudget(0.1)
    for _ in range(10):
        budget.count_request(100.0)
    assert budget.try_spend(100.0)
    assert not budget.try_spend(100.0)  # 2 > 10 % of 10
    budget.count_request(111.0)  # the first second left the 10 s window
    assert budget.try_spend(111.0)  # the floor: one fallback per window


def test_consecutive_failures_eject_for_growing_times() -> None:
    health = BackendHealth(
        "new", OutlierDetection(consecutive_failures=3, base_ejection_time=10, max_ejection_time=25)
    )
    assert not health.record_failure(0.0)
    assert not health.record_failure(0.0)
    assert health.record_failure(0.0)
    assert not health.usable(5.0) and health.usable(10.0)
    for _ in range(3):
        health.record_failure(10.0)
    assert not health.usable(29.9) and health.usable(30.0)  # second ejection: 20 s
    for _ in range(3):
        health.record_failure(30.0)
    assert not health.usable(54.9) and health.usable(55.0)  # capped at 25 s


def test_a_success_resets_the_failure_streak() -> None:
    health = BackendHealth("new", OutlierDetection(consecutive_failures=2))
    health.record_failure(0.0)
    health.record_success()
    assert not health.record_failure(0.0)


def test_active_checks_need_thresholds_to_flip() -> None:
    check = HealthCheck(unhealthy_threshold=2, healthy_threshold=3)
    health = BackendHealth("legacy", OutlierDetection())
    health.record_check(False, check)
    assert health.usable(0.0)
    health.record_check(False, check)
    assert not health.usable(0.0)
    health.record_check(True, check)
    health.record_check(True, check)
    assert not health.usable(0.0)
    health.record_check(True, check)
    assert health.usable(0.0)


def test_registry_fails_over_and_panics_when_both_are_down() -> None:
    registry = HealthRegistry(
        OutlierDetection(consecutive_failures=1), OutlierDetection(consecutive_failures=1)
    )
    assert not registry.degraded
    legacy, new = registry.backends
    new.record_failure(0.0)
    assert registry.degraded
    assert registry.choose(1, 1.0) == (0, True)
    assert registry.choose(0, 1.0) == (0, False)
    legacy.record_failure(0.0)
    assert registry.choose(1, 1.0) == (1, False)  # panic: keep the chosen one
    assert registry.choose(1, 31.0) == (1, False)  # ejections over
    assert not registry.degraded
