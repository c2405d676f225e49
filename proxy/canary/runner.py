"""The canary judge of one process: one asyncio task judging every canary flag.

The decisions are pure (``proxy.canary.judge``, ``proxy.canary.machine``); this
module only wires them to the world: a ``CanaryTap`` per canary flag counts
the requests, each ``interval`` the task takes the flag's window, judges it,
and applies the transition through the ``Controller`` (one state-file write:
the percent as a runtime override with reason ``canary``, or a ``rollback``,
and the progress), then logs it, counts it and sends the webhook.

A flag's numbers come from this process's tap, or, with ``canary.prometheus_url``,
from Prometheus (the fleet's numbers, ``proxy.canary.prometheus_source``): then
no tap counts its requests here, and the interval is judged ``prometheus_lag``
after its end, once Prometheus holds its last scrapes.

It runs in the process that owns the state and the admin API: a single
process. With ``--workers N`` the canary is not active (the supervisor warns).
In a fleet (``state_store: redis://...``) every replica counts, but only the
holder of the judge's lease (``leader``) judges, and its writes are fenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from proxy.canary.judge import Verdict, judge_interval, without_numbers
from proxy.canary.machine import (
    CanaryRefused,
    Progress,
    Transition,
    after_verdict,
    begin,
    step_percent,
)
from proxy.canary.machine import operator as after_operator
from proxy.canary.prometheus_source import PrometheusSource, PrometheusUnavailable
from proxy.canary.tap import CanaryTap
from proxy.canary.webhook import WebhookSender
from proxy.canary.window import IntervalNumbers, ShadowNumbers
from proxy.config.flags import Canary
from proxy.control.controller import Controller, UnknownFlag
from proxy.control.state import FlagOverride, NotLeader, StoreUnavailable, VersionConflict
from proxy.exchange.service import ProxyService
from proxy.observe.stats import Stats

_log = structlog.get_logger("turnout.canary")

ParitySource = Callable[[str], ShadowNumbers | None]
"""Shadow comparisons of a flag since the last call, or None without shadow data.
Called once at the end of each of the flag's intervals; set ``CanaryRunner.parity``
(``Turnout.canary.parity``) to wire a shadow feature in."""

_FEATURE = "canary"  # our name in ProxyService.set_taps
_MAX_SLEEP = 1.0  # seconds: picks up reloads and changed intervals without a wake-up call


def no_parity(_flag: str) -> ShadowNumbers | None:
    return None


class ShadowParity:
    """A ``ParitySource`` over the shadow counters (``turnout_shadow_requests_total``):
    compared = match + mismatch since the last call, None when nothing happened.

    ``new_errors(flag)`` counts the mirrored requests to new that failed (no answer,
    or a 5xx): they are new's errors too.
    """

    def __init__(self, stats: Stats, new_errors: Callable[[str], int] = lambda _: 0) -> None:
        self._stats = stats
        self._new_errors = new_errors
        self._seen: dict[str, tuple[int, int, int]] = {}

    def __call__(self, flag: str) -> ShadowNumbers | None:
        counts = self._stats.shadow
        mismatched = counts.get((flag, "mismatch"), 0)
        now = (counts.get((flag, "match"), 0) + mismatched, mismatched, self._new_errors(flag))
        before = self._seen.get(flag, (0, 0, 0))
        self._seen[flag] = now
        compared, errors = now[0] - before[0], now[2] - before[2]
        if compared <= 0 and errors <= 0:
            return None
        return ShadowNumbers(compared, now[1] - before[1], errors)


class CanaryRunner:
    def __init__(
        self,
        controller: Controller,
        service: ProxyService,
        stats: Stats,
        parity: ParitySource = no_parity,
        clock: Callable[[], float] = time.monotonic,
        leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self._controller = controller
        self._service = service
        self._stats = stats
        self.parity = parity
        self._clock = clock
        self._flags: set[str] = set()
        self.leader = leader
        """Whether this process may judge now (the fleet's lease; always alone)."""
        self._taps: dict[str, CanaryTap] = {}
        """The taps of the flags judged on this process's own numbers (no ``prometheus_url``)."""
        self._prometheus = PrometheusSource()
        self._due: dict[str, float] = {}
        """When each flag is judged next: its interval's end, plus ``prometheus_lag``."""
        self._failovers_seen: dict[str, tuple[int, int]] = {}
        self.intervals: dict[str, int] = {}
        """Intervals closed per flag, judged or not (a paused canary's are dropped)."""
        self._task: asyncio.Task[None] | None = None
        self._webhooks = WebhookSender()

    # -- what is configured and where it stands ---------------------------------
    def canaries(self) -> dict[str, Canary]:
        return {
            name: rule.config.canary
            for name, rule in self._controller.table.flags.items()
            if rule.config.canary is not None
        }

    def progress(self, flag: str) -> Progress:
        saved = self._controller.state.canary.get(flag)
        return Progress.from_json(saved) if saved else Progress()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per canary flag: the progress, the steps and the seconds to the next judgement."""
        now = self._clock()
        result = {}
        for name, canary in self.canaries().items():
            progress = self.progress(name)
            due = self._due.get(name)
            result[name] = {
                **progress.to_json(),
                "step": progress.step + 1,  # for people: step 1 of N
                "steps": list(canary.steps),
                "step_percent": step_percent(canary, progress.step),
                "next_judgement_seconds": (
                    max(0.0, due - now)
                    if due is not None and progress.state == "progressing"
                    else None
                ),
            }
        return result

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._taps.clear()
        self._flags.clear()
        self._service.set_taps(_FEATURE, {})
        await self._webhooks.close()
        await self._prometheus.close()

    async def sync(self) -> None:
        """Follow the config (at start and after each reload): count and judge exactly
        the flags that have a canary; a newly seen one begins (or resumes its saved step).
        A flag judged from Prometheus has no tap: its requests are counted only once."""
        canaries = self.canaries()
        for name in [name for name in self._flags if name not in canaries]:
            self._flags.discard(name)
            self._due.pop(name, None)
        started = [name for name in canaries if name not in self._flags]
        self._flags.update(started)
        self._taps = {
            name: self._taps.get(name) or CanaryTap()
            for name, canary in canaries.items()
            if canary.prometheus_url is None
        }
        self._service.set_taps(_FEATURE, self._taps)
        for name in started:
            self._fresh_interval(name, canaries[name])
            if self.leader():  # a follower leaves the start to the leader (tick)
                await self._apply(name, canaries[name], begin(canaries[name], self._saved(name)))

    def _saved(self, flag: str) -> Progress | None:
        return self.progress(flag) if flag in self._controller.state.canary else None

    async def _loop(self) -> None:
        while True:
            now = self._clock()
            wait = min((due - now for due in self._due.values()), default=_MAX_SLEEP)
            await asyncio.sleep(min(max(wait, 0.0), _MAX_SLEEP))
            try:
                await self.tick(self._clock())
            except Exception:  # a bug here must not end the judging of every flag
                _log.exception("canary_tick_failed")

    # -- judging -------------------------------------------------------------------
    async def tick(self, now: float) -> None:
        """Judge every canary flag whose interval has ended (``prometheus_lag`` ago, for
        a flag judged from Prometheus; the next interval starts now). The leader only: a
        follower drops its windows, so a new leader judges only its own full interval."""
        leading = self.leader()
        for name, canary in self.canaries().items():
            due = self._due.get(name)
            if due is None or now < due:
                continue
            if not leading:
                self._fresh_interval(name, canary)
                continue
            self._due[name] = now + canary.interval + _lag(canary)
            try:
                if name not in self._controller.state.canary:  # not begun by anyone yet
                    await self._apply(name, canary, begin(canary, None))
                else:
                    await self.judge(name, canary, ended=due - _lag(canary))
            except (NotLeader, StoreUnavailable, VersionConflict) as refused:
                _log.warning("canary_judgement_not_written", flag=name, reason=str(refused))

    def _fresh_interval(self, flag: str, canary: Canary) -> None:
        """Start the flag's interval now, its numbers from zero."""
        tap = self._taps.get(flag)
        if tap is not None:
            tap.take()
        self._failovers(flag)
        self.parity(flag)  # shadow numbers so far belong to the interval that ended
        self._due[flag] = self._clock() + canary.interval + _lag(canary)

    def _failovers(self, flag: str) -> tuple[int, int]:
        """Requests of ``flag`` that failed over away from (legacy, new) because it was
        ejected, since the last call (from the fallback counters the exchange keeps)."""
        fallbacks = self._stats.fallbacks
        now = (
            fallbacks.get((flag, "legacy", "new", "ejected"), 0),
            fallbacks.get((flag, "new", "legacy", "ejected"), 0),
        )
        before = self._failovers_seen.get(flag, now)
        self._failovers_seen[flag] = now
        return now[0] - before[0], now[1] - before[1]

    async def judge(self, flag: str, canary: Canary, ended: float | None = None) -> Verdict | None:
        """Take the flag's window and judge it (only a progressing canary is judged).

        ``ended``: when the interval ended (this runner's clock; default now), the
        end of the window asked from Prometheus."""
        numbers = self._taps[flag].take() if flag in self._taps else IntervalNumbers()
        for backend, count in enumerate(self._failovers(flag)):
            numbers.add_failures(backend, count)
        self.intervals[flag] = self.intervals.get(flag, 0) + 1
        shadow = self.parity(flag)
        if self.progress(flag).state != "progressing":
            return None
        if canary.prometheus_url is None:
            verdict = judge_interval(canary, numbers, shadow)
        else:
            verdict = await self._fleet_verdict(flag, canary, canary.prometheus_url, ended)
            current = self.canaries().get(flag)
            if current is None or self.progress(flag).state != "progressing":
                return None  # a reload or an operator moved it while Prometheus answered
            canary = current
        progress = self.progress(flag)
        self._stats.count_canary_judgement(flag, verdict.result)
        _log.info(
            "canary_judged",
            flag=flag,
            step=progress.step,
            result=verdict.result,
            source=verdict.source,
            reason=verdict.reason,
            new=verdict.new,
            legacy=verdict.legacy,
            checks={c.name: c.result for c in verdict.checks},
        )
        await self._apply(flag, canary, after_verdict(canary, progress, verdict), verdict)
        return verdict

    async def _fleet_verdict(
        self, flag: str, canary: Canary, url: str, ended: float | None
    ) -> Verdict:
        """The verdict on the fleet's numbers; inconclusive when Prometheus has none."""
        now = self._clock()
        end = time.time() - (now - (ended if ended is not None else now))
        try:
            numbers, shadow = await self._prometheus.numbers(url, flag, canary.interval, end)
        except PrometheusUnavailable as error:
            _log.warning("canary_prometheus_unavailable", flag=flag, url=url, error=str(error))
            return without_numbers(f"prometheus unavailable: {error}", "prometheus")
        return replace(judge_interval(canary, numbers, shadow), source="prometheus")

    # -- operators -------------------------------------------------------------------
    async def operator(self, action: str, flag: str | None, who: str) -> None:
        """Follow an operator's change (already applied to the flag's percent, except
        ``promote``, which only a canary knows). ``flag`` None: every flag (rollback)."""
        canaries = self.canaries()
        names = list(canaries) if flag is None else [flag]
        for name in names:
            canary = canaries.get(name)
            if canary is None:
                if action == "promote":
                    if name not in self._controller.table.flags:
                        raise UnknownFlag(name)
                    raise CanaryRefused(f"flag {name!r} has no canary")
                continue
            transition = after_operator(canary, self.progress(name), action, who)
            if action in ("resume", "promote"):
                self._fresh_interval(name, canary)  # numbers of the new percent only
            await self._apply(name, canary, transition, fenced=False)

    # -- applying a transition ------------------------------------------------------------
    async def _apply(
        self,
        flag: str,
        canary: Canary,
        transition: Transition,
        verdict: Verdict | None = None,
        *,
        fenced: bool = True,
    ) -> None:
        before_percent = self._controller.table.flags[flag].percent
        override = _override(transition)
        if transition.after != transition.before or override is not None:
            await self._controller.apply_canary(
                flag, transition.after.to_json(), override, fenced=fenced
            )
        if not transition.moved:
            return
        after_percent = self._controller.table.flags[flag].percent
        event = _event(flag, transition, before_percent, after_percent, verdict)
        _log.info("canary_transition", **event)
        if canary.webhook is not None:
            self._webhooks.send(canary.webhook, event)


def _lag(canary: Canary) -> float:
    """How long after its end an interval is judged: Prometheus' scrape lag, or none."""
    return canary.prometheus_lag if canary.prometheus_url is not None else 0.0


def _override(transition: Transition) -> FlagOverride | None:
    now = time.time()
    if transition.rollback:
        return FlagOverride(0.0, "rollback", "canary", now)
    if transition.percent is not None:
        return FlagOverride(transition.percent, "canary", "canary", now)
    return None


def _event(
    flag: str, transition: Transition, before: float, after: float, verdict: Verdict | None
) -> dict[str, Any]:
    old, new = transition.before, transition.after
    return {
        "flag": flag,
        "from": old.state,
        "to": new.state,
        "from_step": old.step,
        "to_step": new.step,
        "holding": new.holding,
        "percent_before": before,
        "percent_after": after,
        "reason": new.reason,
        "verdict": verdict.to_json() if verdict is not None else None,
        "at": time.time(),
    }
