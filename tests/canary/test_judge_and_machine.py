"""The verdict and the state machine as pure functions: no sockets, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.canary.judge import Verdict, judge_interval
from proxy.canary.machine import CanaryRefused, Progress, after_verdict, begin, operator
from proxy.canary.window import IntervalNumbers, ShadowNumbers, SideNumbers
from proxy.config.flags import Canary
from tests.canary.test_statistics import histogram


def canary(**overrides: Any) -> Canary:
    return Canary.model_validate({"steps": [10, 50, 100], "min_requests": 100, **overrides})


def side(requests: int, errors: int = 0, **buckets: int) -> SideNumbers:
    return SideNumbers(requests, errors, histogram(**(buckets or {"b3": requests})))


def interval(new: SideNumbers, legacy: SideNumbers) -> IntervalNumbers:
    return IntervalNumbers((legacy, new))


def checks(verdict: Verdict) -> dict[str, str]:
    return {check.name: check.result for check in verdict.checks}


def test_a_healthy_interval_passes_every_check() -> None:
    verdict = judge_interval(canary(), interval(side(200), side(2000)))
    assert verdict.result == "pass"
    assert checks(verdict) == {
        "error_rate": "pass", "error_rate_increase": "pass", "p99": "pass",
        "p99_increase": "pass", "latency": "pass", "mismatch_rate": "skipped",
    }  # fmt: skip


def test_too_little_traffic_is_inconclusive_even_when_failing() -> None:
    verdict = judge_interval(canary(), interval(side(99, errors=99), side(2000)))
    assert verdict.result == "inconclusive"
    assert verdict.reason == "not enough traffic: 99 requests on new < 100"
    assert checks(verdict)["error_rate"] == "fail"  # shown, but it decides nothing


def test_the_absolute_error_rate() -> None:
    verdict = judge_interval(canary(), interval(side(200, errors=100), side(2000)))
    assert verdict.result == "fail"
    assert "new's error rate 50.00% > 1.00%" in verdict.reason


def test_the_relative_error_rate_needs_significance() -> None:
    loose = canary(max_error_rate="10%")
    noise = judge_interval(loose, interval(side(200, errors=3), side(2000)))
    assert checks(noise)["error_rate_increase"] == "pass"  # 1.5% vs 0%: p = 0.12
    worse = judge_interval(loose, interval(side(400, errors=20), side(2000, errors=2)))
    assert worse.result == "fail"
    assert checks(worse) == {**checks(noise), "error_rate_increase": "fail"}
    assert "exceeds legacy's 0.10% by more than 0.50%" in worse.reason


def test_shadow_errors_count_as_new_errors_and_mismatches_are_judged() -> None:
    config = canary(max_mismatch_rate="2%")
    shadow = ShadowNumbers(compared=100, mismatched=5, errors=50)
    verdict = judge_interval(config, interval(side(150), side(2000)), shadow)
    assert verdict.new["requests"] == 200 and verdict.new["errors"] == 50
    assert checks(verdict)["error_rate"] == "fail"
    assert checks(verdict)["mismatch_rate"] == "fail"
    assert "shadow mismatch rate 5.00% > 2.00%" in verdict.reason


def test_the_absolute_p99() -> None:
    # all of new in (0.5, 1] s: p99 = 0.995 s > 0.8 s
    verdict = judge_interval(canary(), interval(side(200, b9=200), side(2000, b9=2000)))
    assert checks(verdict)["p99"] == "fail"
    assert checks(verdict)["latency"] == "pass"  # the same distribution as legacy


def test_a_slower_distribution_fails_the_latency_test_only_beyond_the_min_effect() -> None:
    legacy = side(2000, b5=1900, b6=100)
    slower = judge_interval(canary(), interval(side(200, b5=100, b6=100), legacy))
    assert checks(slower)["latency"] == "fail"
    assert "new is slower than legacy: median +" in slower.reason
    # significant, but a median shift under min_effect is not worth failing for
    slight = judge_interval(
        canary(judge={"min_effect": "100%"}), interval(side(200, b5=100, b6=100), legacy)
    )
    assert checks(slight)["latency"] == "pass"


def test_the_p99_increase_is_tested_on_the_share_of_slow_requests() -> None:
    legacy = side(2000, b5=1980, b6=20)  # p99 interpolated at the top of (0.025, 0.05]
    one_slow = judge_interval(canary(), interval(side(200, b5=199, b8=1), legacy))
    assert checks(one_slow)["p99_increase"] == "pass"  # one request is not a trend
    many_slow = judge_interval(canary(), interval(side(200, b5=180, b8=20), legacy))
    assert checks(many_slow)["p99_increase"] == "fail"


def verdict_of(result: str) -> Verdict:
    return Verdict(result, (), {}, {}, reason=f"{result} reason")  # type: ignore[arg-type]


def run(config: Canary, progress: Progress, *results: str) -> tuple[Progress, list[float]]:
    percents = []
    for result in results:
        transition = after_verdict(config, progress, verdict_of(result))
        progress = transition.after
        if transition.rollback:
            percents.append(0.0)
        elif transition.percent is not None:
            percents.append(transition.percent)
    return progress, percents


def test_passes_walk_the_steps_to_promotion() -> None:
    config = canary()
    start = begin(config, None)
    assert (start.after.state, start.after.step, start.percent) == ("progressing", 0, 10)
    progress, percents = run(config, start.after, "pass", "pass")
    assert progress.state == "promoted" and percents == [50, 100]
    assert progress.last == verdict_of("pass").to_json()


def test_failures_in_a_row_roll_back_and_a_pass_resets_the_count() -> None:
    config = canary(failures_to_rollback=2)
    start = begin(config, None).after
    progress, percents = run(config, start, "fail", "pass", "fail")
    assert (progress.state, progress.step, progress.failures, percents) == (
        "progressing", 1, 1, [50]
    )
    progress, percents = run(config, progress, "fail")
    assert (progress.state, progress.reason, percents) == ("rolled_back", "fail reason", [0.0])


def test_inconclusive_intervals_pause_never_promote_nor_roll_back() -> None:
    config = canary(max_inconclusive=3)
    progress, percents = run(config, begin(config, None).after, *["inconclusive"] * 3)
    assert progress.state == "paused" and percents == []
    assert progress.reason == "inconclusive reason (3 inconclusive intervals in a row)"
    assert run(config, progress, "pass", "fail", "fail")[0].state == "paused"  # not judged


def test_confirm_promotion_holds_until_promote() -> None:
    config = canary(confirm_promotion=True)
    progress, percents = run(config, begin(config, None).after, "pass", "pass", "pass")
    assert (progress.state, progress.step, progress.holding, percents) == (
        "progressing", 1, True, [50]
    )
    promoted = operator(config, progress, "promote", "127.0.0.1")
    assert (promoted.after.state, promoted.percent) == ("promoted", 100.0)
    failing, _ = run(config, progress, "fail", "fail")  # still judged while holding
    assert failing.state == "rolled_back" and not failing.holding


def test_operator_actions() -> None:
    config = canary()
    progress = run(config, begin(config, None).after, "pass")[0]  # step 1 (50 %)
    paused = operator(config, progress, "percent", "10.0.0.1")
    assert (paused.after.state, paused.percent) == ("paused", None)
    resumed = operator(config, paused.after, "resume", "10.0.0.1")
    assert (resumed.after.state, resumed.after.step, resumed.percent) == ("progressing", 1, 50)
    rolled = operator(config, progress, "rollback", "10.0.0.1").after
    assert rolled.state == "rolled_back"
    with pytest.raises(CanaryRefused):
        operator(config, rolled, "promote", "10.0.0.1")
    again = operator(config, rolled, "resume", "10.0.0.1")
    assert (again.after.state, again.after.step, again.percent) == ("progressing", 0, 10)


def test_progress_survives_json_and_unreadable_progress_starts_over() -> None:
    progress = Progress("progressing", 2, failures=1, reason="step passed", last={"result": "x"})
    assert Progress.from_json(progress.to_json()) == progress
    assert Progress.from_json({"state": "bogus", "step": 1}) == Progress()
    resumed = begin(canary(), Progress("progressing", 7))  # fewer steps after a reload
    assert (resumed.after.step, resumed.percent) == (1, 50)
