"""The canary's state machine: pure functions of (config, progress, event) -> transition.

States (SPEC §7): ``pending`` (configured, not started), ``progressing`` (at
``step``), ``paused`` (an operator set a percent by hand, or too many
inconclusive intervals), ``promoted`` (100 %, done) and ``rolled_back`` (0 %,
with the failing checks as reason, until ``resume``).

The percent after a passed interval is the next step; passing the last step,
or moving to a step of 100, promotes. With ``confirm_promotion`` the canary
*holds* instead: it stays at its step (still judged: a failure still rolls
back) until ``turnout promote``.

Operator actions: ``percent`` (``turnout set``) pauses; ``rollback`` ends in
``rolled_back``; ``resume`` restarts a paused canary at its current step and a
rolled-back one at the first step (its traffic is at 0 %: the safe way back
up is from the bottom); ``promote`` ends in ``promoted``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from proxy.canary.judge import Verdict
from proxy.config.flags import Canary

State = Literal["pending", "progressing", "paused", "promoted", "rolled_back"]
STATES: tuple[State, ...] = ("pending", "progressing", "paused", "promoted", "rolled_back")
HOLD_REASON = "waiting for turnout promote"


class CanaryRefused(ValueError):
    """An operator action a canary cannot take in its state (e.g. promote a rolled-back one)."""


@dataclass(frozen=True)
class Progress:
    """Where a flag's canary stands; saved in the state file as JSON."""

    state: State = "pending"
    step: int = 0
    failures: int = 0
    """Failed intervals in a row."""
    inconclusive: int = 0
    """Inconclusive intervals in a row."""
    reason: str = ""
    holding: bool = False
    """At the promotion gate (``confirm_promotion``), waiting for ``promote``."""
    last: dict[str, Any] | None = None
    """The last verdict (``Verdict.to_json``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "step": self.step,
            "failures": self.failures,
            "inconclusive": self.inconclusive,
            "reason": self.reason,
            "holding": self.holding,
            "last": self.last,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        """Read saved progress; anything unreadable starts over as ``pending``."""
        state, step = data.get("state"), data.get("step")
        if state not in STATES or not isinstance(step, int) or step < 0:
            return cls()
        last = data.get("last")
        return cls(
            state=cast(State, state),
            step=step,
            failures=_count(data.get("failures")),
            inconclusive=_count(data.get("inconclusive")),
            reason=str(data.get("reason") or ""),
            holding=data.get("holding") is True,
            last=last if isinstance(last, dict) else None,
        )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


@dataclass(frozen=True)
class Transition:
    """The new progress and what to do with the flag's percent."""

    before: Progress
    after: Progress
    percent: float | None = None
    """The canary's new percent for the flag; None: leave the flag's percent alone."""
    rollback: bool = False
    """Set the flag to 0 % as a rollback."""

    @property
    def moved(self) -> bool:
        """A state or step change (what gets logged, counted and sent to the webhook)."""
        before, after = self.before, self.after
        return (before.state, before.step, before.holding) != (
            after.state,
            after.step,
            after.holding,
        )


def step_percent(canary: Canary, step: int) -> float:
    return canary.steps[min(step, len(canary.steps) - 1)]


def _progressing(canary: Canary, before: Progress, step: int, reason: str) -> Transition:
    step = min(step, len(canary.steps) - 1)
    after = Progress("progressing", step, reason=reason, last=before.last)
    if step_percent(canary, step) >= 100:
        return _promoted(before, reason or "reached 100%")
    return Transition(before, after, percent=step_percent(canary, step))


def _promoted(before: Progress, reason: str, base: Progress | None = None) -> Transition:
    after = replace(
        base or before, state="promoted", failures=0, inconclusive=0, holding=False, reason=reason
    )
    return Transition(before, after, percent=100.0)


def begin(canary: Canary, progress: Progress | None) -> Transition:
    """At start-up (or when a flag gains a canary): a pending canary starts at the
    first step; a progressing one is put back at its step (steps may have changed);
    the others stay as they are."""
    before = progress or Progress()
    if before.state == "pending":
        return _progressing(canary, before, 0, "started")
    if before.state == "progressing":
        below_100 = [i for i, percent in enumerate(canary.steps) if percent < 100]
        if not below_100:
            return _promoted(before, "reached 100%")
        step = min(before.step, below_100[-1])
        after = replace(before, step=step)
        return Transition(before, after, percent=step_percent(canary, step))
    return Transition(before, before)


def after_verdict(canary: Canary, progress: Progress, verdict: Verdict) -> Transition:
    """A progressing canary after one judged interval."""
    judged = replace(progress, last=verdict.to_json())
    if progress.state != "progressing":
        return Transition(progress, judged)
    if verdict.result == "inconclusive":
        count = progress.inconclusive + 1
        if count >= canary.max_inconclusive:
            reason = f"{verdict.reason} ({count} inconclusive intervals in a row)"
            after = replace(judged, state="paused", inconclusive=count, reason=reason)
            return Transition(progress, after)
        return Transition(progress, replace(judged, inconclusive=count))
    if verdict.result == "fail":
        failures = progress.failures + 1
        if failures >= canary.failures_to_rollback:
            after = replace(
                judged,
                state="rolled_back",
                failures=failures,
                inconclusive=0,
                holding=False,
                reason=verdict.reason,
            )
            return Transition(progress, after, rollback=True)
        return Transition(progress, replace(judged, failures=failures, inconclusive=0))
    return _after_pass(canary, progress, replace(judged, failures=0, inconclusive=0))


def _after_pass(canary: Canary, before: Progress, judged: Progress) -> Transition:
    following = before.step + 1
    if following < len(canary.steps) and canary.steps[following] < 100:
        after = replace(judged, step=following, reason="step passed")
        return Transition(before, after, percent=canary.steps[following])
    if canary.confirm_promotion:
        return Transition(before, replace(judged, holding=True, reason=HOLD_REASON))
    return _promoted(before, "all steps passed", judged)


def operator(canary: Canary, progress: Progress, action: str, who: str) -> Transition:
    """An operator's ``percent``, ``rollback``, ``resume`` or ``promote`` on a canary flag.
    Raises ``CanaryRefused`` for a promote of a rolled-back canary."""
    state = progress.state
    if action == "promote":
        if state == "rolled_back":
            raise CanaryRefused("the canary was rolled back: `turnout resume` it first")
        return _promoted(progress, f"promoted by {who}")
    if state == "promoted" and action != "rollback":
        return Transition(progress, progress)
    if action == "percent":
        after = replace(progress, state="paused", holding=False, reason=f"percent set by {who}")
        return Transition(progress, after)
    if action == "rollback":
        after = replace(
            progress, state="rolled_back", holding=False, reason=f"rolled back by {who}"
        )
        return Transition(progress, after)
    if action == "resume":
        step = 0 if state == "rolled_back" else progress.step
        return _progressing(canary, progress, step, f"resumed by {who}")
    raise ValueError(f"unknown operator action {action!r}")
