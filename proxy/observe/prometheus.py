"""Prometheus exposition (SPEC §9) rendered from a stats snapshot at scrape time.

The hot path only bumps plain counters (``proxy.observe.stats``); this module turns a
(possibly merged, multi-worker) snapshot plus the current flag and reload state
into metric families, through prometheus-client's exposition code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from proxy.observe.stats import DURATION_BOUNDS, OVERHEAD_BOUNDS, Snapshot

CANARY_STATES = ("pending", "progressing", "paused", "promoted", "rolled_back")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class ControlState:
    """What /metrics reports besides request counters: flags, canary, reloads."""

    flag_percent: Mapping[str, float] = field(default_factory=dict)
    canary_state: Mapping[str, str] = field(default_factory=dict)
    reloads: Mapping[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    last_reload_success: float = 0.0
    state_store_up: bool = True


def _counter(name: str, doc: str, labels: list[str], rows: list[list[Any]]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for row in rows:
        family.add_metric([str(value) for value in row[:-1]], float(row[-1]))
    return family


def _durations(rows: list[list[Any]]) -> Metric:
    family = HistogramMetricFamily(
        "turnout_request_duration_seconds",
        "Time from request start to response headers (whole body for streams), per backend.",
        labels=["route", "flag", "backend"],
    )
    bounds = [*(repr(b) for b in DURATION_BOUNDS), "+Inf"]
    for route, flag, backend, buckets, total, _count in rows:
        cumulative = list(accumulate(buckets))
        family.add_metric(
            [str(route), str(flag), str(backend)],
            list(zip(bounds, (float(c) for c in cumulative), strict=True)),
            float(total),
        )
    return family


def _overhead(snapshot: Snapshot) -> Metric:
    family = HistogramMetricFamily(
        "turnout_proxy_overhead_seconds",
        "Time a request spent in Turnout itself: its total minus the wait for backends.",
    )
    buckets, total = snapshot.get("overhead") or [[0] * (len(OVERHEAD_BOUNDS) + 1), 0.0]
    bounds = [*(repr(b) for b in OVERHEAD_BOUNDS), "+Inf"]
    cumulative = (float(c) for c in accumulate(buckets))
    family.add_metric([], list(zip(bounds, cumulative, strict=True)), float(total))
    return family


def families(snapshot: Snapshot, control: ControlState) -> Iterator[Metric]:
    """Every SPEC §9 metric family, from one snapshot."""
    yield _counter(
        "turnout_requests",
        "Proxied requests by route, flag, backend, method and status code.",
        ["route", "flag", "backend", "method", "code"],
        snapshot["requests"],
    )
    yield _durations(snapshot["durations"])
    yield _overhead(snapshot)
    yield _counter(
        "turnout_upstream_errors",
        "Failed attempts to a backend by kind (connect_error, timeout, reset, 5xx).",
        ["backend", "kind"],
        snapshot["upstream_errors"],
    )
    yield _counter(
        "turnout_fallbacks",
        "Requests replayed to the other backend.",
        ["flag", "from_backend", "to_backend", "reason"],
        snapshot["fallbacks"],
    )
    yield _counter(
        "turnout_shadow_requests",
        "Mirrored requests by result (match, mismatch, error, dropped).",
        ["flag", "result"],
        snapshot["shadow"],
    )
    percent = GaugeMetricFamily(
        "turnout_flag_percent", "Share of a flag's traffic sent to new.", labels=["flag"]
    )
    for flag, value in control.flag_percent.items():
        percent.add_metric([flag], value)
    yield percent
    canary = GaugeMetricFamily(
        "turnout_canary_state", "1 for the canary state a flag is in.", labels=["flag", "state"]
    )
    for flag, current in control.canary_state.items():
        for state in CANARY_STATES:
            canary.add_metric([flag, state], 1.0 if state == current else 0.0)
    yield canary
    yield _counter(
        "turnout_canary_judgements",
        "Canary intervals judged, by result (pass, fail, inconclusive).",
        ["flag", "result"],
        snapshot.get("canary_judgements", []),
    )
    up = GaugeMetricFamily("turnout_backend_up", "1 while a backend is usable.", labels=["backend"])
    for backend, value in snapshot["backend_up"].items():
        up.add_metric([backend], float(value))
    yield up
    reloads = CounterMetricFamily(
        "turnout_config_reloads", "Config reload attempts by result.", labels=["result"]
    )
    for result, count in control.reloads.items():
        reloads.add_metric([result], float(count))
    yield reloads
    yield CounterMetricFamily(
        "turnout_worker_restarts",
        "Worker processes started again after an exit (--workers N; 0 without workers).",
        value=float(snapshot.get("worker_restarts", 0)),
    )
    yield GaugeMetricFamily(
        "turnout_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful config load.",
        value=control.last_reload_success,
    )
    yield GaugeMetricFamily(
        "turnout_state_store_up",
        "1 while runtime changes can be saved: Redis answers (state_store), or the "
        "state_file's directory is writable (always 1 without either).",
        value=1.0 if control.state_store_up else 0.0,
    )


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot, control: ControlState) -> None:
        self._snapshot = snapshot
        self._control = control

    def collect(self) -> Iterator[Metric]:
        return families(self._snapshot, self._control)


def render(snapshot: Snapshot, control: ControlState) -> bytes:
    """Prometheus text exposition of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot, control))
    return generate_latest(registry)
