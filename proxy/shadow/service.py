"""The shadow service of one process: per-flag state, and the shadows in flight.

For every flag with ``shadow:`` it registers a tap factory with the proxy
service (``set_taps``), kept in step with reloads. A finished, sampled exchange
is handed to ``launch``: the copy goes to the other backend in a task of its
own — never awaited by the client, never retried, never counted against the
other backend's health — and its answer is compared with the primary's.
Bounded: ``max_in_flight`` shadows per flag; over it, shadows are dropped and
counted. A client that disconnects does not cancel a shadow already sent;
``stop`` cancels those still running at shutdown, after the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import TYPE_CHECKING, Any

import structlog

from proxy.config.flags import Shadow
from proxy.decision.bucketing import threshold_for
from proxy.decision.sides import BACKEND_NAMES, LEGACY
from proxy.exchange.hooks import ExchangeTap, TapFactory
from proxy.http.errors import UpstreamError
from proxy.http.pool import BackendTarget, ConnectionPool
from proxy.observe.stats import Stats
from proxy.shadow.compare import CompareRules, Observed, compare
from proxy.shadow.discrepancies import DiscrepancyLog, redact_diff, secret_values, shown_body
from proxy.shadow.fetch import AnswerTooLarge, fetch
from proxy.shadow.mirror import ShadowTap
from proxy.shadow.noise import NoiseModel
from proxy.shadow.pipe import NoConnection, ShadowCall, ShadowSender
from proxy.shadow.report import SNAPSHOT_KEYS, FlagReport, Verdict
from proxy.shadow.sampling import calibrate_seed, sampled, sampled_below, shadow_seed

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange
    from proxy.exchange.service import ProxyService, ProxyTable

_log = structlog.get_logger("turnout.shadow")
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class ShadowFlag:
    """One flag's shadowing: its compiled config, in-flight count and report.

    Survives reloads (the report and the noise model keep counting); ``update``
    takes the new config.
    """

    def __init__(self, name: str, config: Shadow) -> None:
        self.name = name
        self.seed = shadow_seed(name)
        self.calibrate_seed = calibrate_seed(name)
        self.report = FlagReport()
        self.in_flight = 0
        self.update(config)

    def update(self, config: Shadow) -> None:
        self.config = config
        self.methods = frozenset(config.methods)
        self.threshold = threshold_for(config.percent)
        self.rules = CompareRules.from_config(config.compare)
        # The compared headers, and always the content type (a stream is not
        # compared; a body is parsed as JSON only when its content type says so).
        self.header_names = {
            name.encode(): name for name in (*self.rules.headers, "content-type")
        }  # lower-case bytes as parsed -> the name the comparison uses
        # Only a header of one of these lengths can be compared: the others are not
        # lower-cased at all (an answer has a dozen headers, one or two compared).
        self.header_lengths = frozenset(len(name) for name in self.header_names)
        calibrate = config.compare.calibrate
        noise: NoiseModel = self.report.noise
        if calibrate is not None:
            noise.relative_threshold = calibrate.relative_threshold / 100
            noise.absolute_threshold = calibrate.absolute_threshold / 100

    def header_view(self, headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
        """The compared headers of an answer and its content type, by lower-case name
        (first value)."""
        view: dict[str, str] = {}
        lengths, names, wanted = self.header_lengths, self.header_names, len(self.header_names)
        for name, value in headers:
            if len(name) in lengths and (key := names.get(name.lower())) and key not in view:
                view[key] = value.decode("latin-1")
                if len(view) == wanted:
                    break  # all found: the rest of the headers are not looked at
        return view


class _Factory(TapFactory):
    __slots__ = ("_flag", "_service")

    def __init__(self, flag: ShadowFlag, service: ShadowService) -> None:
        self._flag, self._service = flag, service

    def open(self, exchange: Exchange) -> ExchangeTap | None:
        request, flag = exchange.request, self._flag
        if request.upgrade or request.method not in flag.methods:
            return None
        request_id = self._service.request_id(request.headers)
        if not sampled_below(request_id, flag.seed, flag.threshold):
            return None
        length = request.content_length
        if length is not None and length > flag.config.max_body_bytes:
            self._service.drop(flag, "body_too_large")
            return None
        return ShadowTap(flag, self._service, request_id)


class ShadowService:
    def __init__(self, proxy: ProxyService, stats: Stats, discrepancy_log: str | None) -> None:
        self._proxy = proxy
        self._stats = stats
        self.flags: dict[str, ShadowFlag] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._senders: dict[ConnectionPool, ShadowSender] = {}
        self._ids = itertools.count()
        self.log = DiscrepancyLog(discrepancy_log)
        proxy.table_listeners.append(self.apply)
        self.apply(proxy.table)

    def apply(self, table: ProxyTable) -> None:
        """Follow a (re)loaded config: flags gained, changed or lost a shadow."""
        factories: dict[str, TapFactory] = {}
        for name, rule in table.flags.items():
            config = rule.config.shadow
            if config is None:
                continue
            flag = self.flags.get(name)
            if flag is None:
                flag = self.flags[name] = ShadowFlag(name, config)
            else:
                flag.update(config)
            factories[name] = _Factory(flag, self)
        self._proxy.set_taps("shadow", factories)
        pools = {target.pool for target in table.backends}
        for pool in [pool for pool in self._senders if pool not in pools]:
            self._senders.pop(pool).retire()  # a backend that changed or left

    def request_id(self, headers: dict[str, str]) -> str:
        """``x-request-id`` when the request has one, else a process-local counter."""
        return headers.get("x-request-id") or f"turnout-{next(self._ids)}"

    # -- launching -------------------------------------------------------------
    def drop(self, flag: ShadowFlag, reason: str) -> None:
        flag.report.count_dropped(reason)
        self._count(flag, "dropped")

    def launch(self, shadow: ShadowTap) -> None:
        flag = shadow.flag
        if flag.in_flight >= flag.config.max_in_flight:
            self.drop(flag, "in_flight")
            return
        flag.in_flight += 1
        other = self._proxy.table.backends[1 - shadow.primary_backend]
        if shadow.method == "GET" and flag.config.pipeline:  # no task (proxy.shadow.pipe)
            self._sender(other).submit(shadow)
            return
        task = asyncio.get_running_loop().create_task(self._run(shadow, other))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sender(self, target: BackendTarget) -> ShadowSender:
        sender = self._senders.get(target.pool)
        if sender is None:
            sender = self._senders[target.pool] = ShadowSender(target)
        return sender

    async def stop(self) -> None:
        """Cancel the shadows still running (call after the proxy has drained)."""
        for sender in self._senders.values():
            sender.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.log.close()

    # -- one shadow --------------------------------------------------------------
    async def _run(self, shadow: ShadowTap, other: BackendTarget) -> None:
        """A shadow that is not pipelined (not a GET): one request on a pooled connection."""
        flag = shadow.flag
        try:
            try:
                answer = await self._fetch(other, shadow)
            except (UpstreamError, TimeoutError, OSError) as error:
                self.failed(shadow, error)
                return
            if self.answered(shadow, *answer):
                primary = self._proxy.table.backends[shadow.primary_backend]
                with contextlib.suppress(UpstreamError, TimeoutError, OSError):
                    self.calibrated(shadow, *await self._fetch(primary, shadow))
        except Exception as error:  # a bug here must not go unnoticed, nor stop the others
            _log.error("shadow_failed", flag=flag.name, error=repr(error))
        finally:
            flag.in_flight -= 1

    @staticmethod
    async def _fetch(
        target: BackendTarget, shadow: ShadowTap
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes | None]:
        """The backend's answer to the shadow copy (the body ``None`` when over the cap);
        bounded by the backend's own timeouts (connect, response, idle)."""
        try:
            return await fetch(
                target, shadow.head, shadow.body, shadow.method, shadow.flag.config.max_body_bytes
            )
        except AnswerTooLarge:
            return 0, [], None

    def answered(
        self,
        shadow: ShadowTap,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
    ) -> bool:
        """Compare the other backend's answer with the primary's; True when a
        calibration request should follow (a safe request, sampled for it)."""
        flag = shadow.flag
        if body is None:
            self.drop(flag, "body_too_large")
            return False
        answer = Observed(status, flag.header_view(headers), body)
        if shadow.primary_backend == LEGACY:
            legacy, new = shadow.primary, answer
            if status >= 500:
                flag.report.new_errors += 1
        else:
            legacy, new = answer, shadow.primary
        verdict = flag.report.judge(shadow.route, compare(legacy, new, flag.rules))
        self._count(flag, verdict.result)
        if verdict.result == "mismatch":
            secrets = [*shadow.request_headers, *shadow.primary_headers, *headers]
            self._log_mismatch(shadow, legacy, new, verdict, secrets)
        calibrate = flag.config.compare.calibrate
        return (
            calibrate is not None
            and shadow.method in _SAFE
            and sampled(shadow.request_id, flag.calibrate_seed, calibrate.percent)
        )

    def failed(self, shadow: ShadowTap, error: Exception) -> None:
        """No answer from the other backend: an error of that backend's, or a drop when
        the shadow found no connection it may use."""
        flag = shadow.flag
        if isinstance(error, NoConnection):
            self.drop(flag, error.reason)
            return
        flag.report.count_error()
        self._count(flag, "error")
        if shadow.primary_backend == LEGACY:
            flag.report.new_errors += 1  # the copy went to new, and new failed
        _log.info("shadow_error", flag=flag.name, route=shadow.route, error=str(error))

    def calibrate(self, shadow: ShadowTap) -> None:
        """Ask the primary's backend again (a GET): what differs now is that backend's noise."""
        primary = self._proxy.table.backends[shadow.primary_backend]
        self._sender(primary).submit(_Calibration(shadow))

    @staticmethod
    def calibrated(
        shadow: ShadowTap,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
    ) -> None:
        """The primary's backend answered the same request again: record its noise."""
        if body is None:
            return
        flag = shadow.flag
        again = Observed(status, flag.header_view(headers), body)
        flag.report.noise.record_within(
            diff.pattern for diff in compare(shadow.primary, again, flag.rules)
        )

    def _count(self, flag: ShadowFlag, result: str) -> None:
        key = (flag.name, result)
        self._stats.shadow[key] = self._stats.shadow.get(key, 0) + 1

    def _log_mismatch(
        self,
        shadow: ShadowTap,
        legacy: Observed,
        new: Observed,
        verdict: Verdict,
        secrets: list[tuple[bytes, bytes]],
    ) -> None:
        redacted = frozenset(shadow.flag.config.redact)
        record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "flag": shadow.flag.name,
            "route": shadow.route,
            "method": shadow.method,
            "path": shadow.path,
            "served_by": BACKEND_NAMES[shadow.primary_backend],
            "status": {"legacy": legacy.status, "new": new.status},
            "diffs": [
                redact_diff(d, noise, redacted)
                for noise, group in ((False, verdict.real), (True, verdict.noise))
                for d in group
            ],
            "legacy_body": shown_body(legacy.body),
            "new_body": shown_body(new.body),
        }
        self.log.write(record, secret_values(secrets), redacted)

    def new_errors(self, flag: str) -> int:
        """Mirrored requests to new that failed (no answer or a 5xx), ever, for a flag."""
        found = self.flags.get(flag)
        return found.report.new_errors if found is not None else 0

    def snapshot_rows(self) -> dict[str, list[list[Any]]]:
        """Every flag's report as snapshot rows (see ``FlagReport.rows``)."""
        merged: dict[str, list[list[Any]]] = {key: [] for key in SNAPSHOT_KEYS}
        for name, flag in self.flags.items():
            for key, rows in flag.report.rows(name).items():
                merged[key].extend(rows)
        return merged


class _Calibration(ShadowCall):
    """The same GET again to the primary's backend, for noise calibration."""

    __slots__ = ("_shadow",)

    def __init__(self, shadow: ShadowTap) -> None:
        super().__init__(shadow.head, shadow.flag.config.max_body_bytes)
        self._shadow = shadow

    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | None) -> None:
        shadow = self._shadow
        shadow.flag.in_flight -= 1
        try:
            ShadowService.calibrated(shadow, status, headers, body)
        except Exception as error:  # as for a mirror: logged, never raised into the pipe
            _log.error("shadow_failed", flag=shadow.flag.name, error=repr(error))

    def fail(self, error: Exception) -> None:
        self._shadow.flag.in_flight -= 1  # a calibration that failed teaches nothing
