"""Backend health: active checks and passive outlier ejection, as a pure state machine.

``BackendHealth`` is fed with results and the time; the ``HealthChecker`` task
(``proxy.resilience.checker``) is the thin I/O around it. A backend is *usable*
while its active checks pass (or none are configured) and it is not ejected.
The router avoids an unusable backend while the other is usable; when neither
is, it uses the chosen one anyway (Envoy's panic mode) rather than refuse all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from proxy.config.models import HealthCheck, OutlierDetection

_log = structlog.get_logger("turnout.health")


class BackendHealth:
    """Health of one backend: active check streaks and passive ejections."""

    __slots__ = (
        "_outlier",
        "check_failures",
        "check_successes",
        "checks_ok",
        "consecutive_failures",
        "ejected_until",
        "ejections",
        "name",
        "on_change",
    )

    def __init__(self, name: str, outlier: OutlierDetection) -> None:
        self.name = name
        self._outlier = outlier
        self.checks_ok = True
        self.check_successes = 0
        self.check_failures = 0
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until = 0.0
        self.on_change: Callable[[], None] | None = None

    def usable(self, now: float) -> bool:
        return self.checks_ok and now >= self.ejected_until

    # -- passive: results of real requests ---------------------------------
    def record_success(self) -> None:
        if self.consecutive_failures:
            self.consecutive_failures = 0

    def record_failure(self, now: float) -> bool:
        """Count a failed request; True when this failure ejected the backend."""
        self.consecutive_failures += 1
        if self.consecutive_failures < self._outlier.consecutive_failures:
            return False
        if now < self.ejected_until:
            return False
        self.ejections += 1
        seconds = min(
            self._outlier.base_ejection_time * self.ejections, self._outlier.max_ejection_time
        )
        self.ejected_until = now + seconds
        self.consecutive_failures = 0
        _log.warning(
            "backend_ejected", backend=self.name, seconds=seconds, ejections=self.ejections
        )
        self._changed()
        return True

    # -- active checks ---------------------------------------------------------
    def record_check(self, ok: bool, check: HealthCheck) -> None:
        if ok:
            self.check_failures = 0
            self.check_successes += 1
            if not self.checks_ok and self.check_successes >= check.healthy_threshold:
                self.checks_ok = True
                _log.info("backend_healthy", backend=self.name)
                self._changed()
        else:
            self.check_successes = 0
            self.check_failures += 1
            if self.checks_ok and self.check_failures >= check.unhealthy_threshold:
                self.checks_ok = False
                _log.warning("backend_unhealthy", backend=self.name)
                self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class HealthRegistry:
    """Both backends' health, and the hot path's one-attribute test ``degraded``."""

    def __init__(self, legacy: OutlierDetection, new: OutlierDetection) -> None:
        self.backends = (BackendHealth("legacy", legacy), BackendHealth("new", new))
        self.degraded = False
        self._usable: tuple[bool, ...] = (True, True)
        for health in self.backends:
            health.on_change = self._mark_degraded

    def _mark_degraded(self) -> None:
        # Conservative: the next choose() recomputes it with that request's time.
        self.degraded = True

    def choose(self, backend: int, now: float) -> tuple[int, bool]:
        """(backend to use, whether that is a failover away from ``backend``)."""
        usable = tuple(h.usable(now) for h in self.backends)
        for health, was, is_now in zip(self.backends, self._usable, usable, strict=True):
            if is_now and not was:
                _log.info("backend_returned", backend=health.name)
        self._usable = usable
        self.degraded = not all(usable)
        if not self.degraded or self.backends[backend].usable(now):
            return backend, False
        other = 1 - backend
        if self.backends[other].usable(now):
            return other, True
        return backend, False  # panic: both unusable, try the chosen one

    def up(self) -> dict[str, int]:
        now = time.monotonic()
        return {h.name: int(h.usable(now)) for h in self.backends}
