"""The per-flag policy models: targeting, shadow, fallback and canary (SPEC §3)."""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from proxy.config.base import MIB, HeaderName, Method
from proxy.config.base import StrictModel as _Model
from proxy.config.shorthand import parse_fallback_trigger
from proxy.config.values import Duration, Percent, PositiveDuration, Size, TrafficPercent


class TargetList(_Model):
    tenants: list[str] = []
    users: list[str] = []


class Targeting(_Model):
    """Ids forced to one side; a tenant or user id may not be on both sides."""

    new: TargetList = TargetList()
    legacy: TargetList = TargetList()

    @model_validator(mode="after")
    def _disjoint(self) -> Targeting:
        problems = [
            f"{kind[:-1]} {ident!r} is listed under both new.{kind} and legacy.{kind}"
            for kind in ("tenants", "users")
            for ident in getattr(self.new, kind)
            if ident in getattr(self.legacy, kind)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _status_pair(value: tuple[int, int]) -> tuple[int, int]:
    for code in value:
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status code (100..599)")
    return value


Normalizer = Literal[
    "uuid", "iso_timestamp", "unordered_lists", "float_tolerance", "case_insensitive_keys"
]


class Calibrate(_Model):
    """Send a sample of safe requests to the primary's backend twice: a field that
    differs between two answers of the same backend is noise (Diffy's thresholds)."""

    percent: Percent
    relative_threshold: Percent = 20.0
    """A field counts as a real difference only if it differs between backends more
    often than within one by this much, relatively..."""
    absolute_threshold: Percent = 0.03
    """...and by this many percent of the compared requests."""


class Compare(_Model):
    ignore: list[str] = []
    """Paths such as ``body.meta.generatedAt``, ``body.items[*].updatedAt``, ``headers.date``."""
    headers: list[HeaderName] = ["content-type"]
    """Response headers compared (content-type by its media type only)."""
    normalize: list[Normalizer] = []
    float_tolerance: float = Field(default=1e-6, gt=0)
    """Relative and absolute tolerance for numbers, with ``normalize: [float_tolerance]``."""
    same_status: list[Annotated[tuple[int, int], AfterValidator(_status_pair)]] = []
    """Status pairs counted as equal, e.g. ``[[400, 422]]``."""
    calibrate: Calibrate | None = None


class Shadow(_Model):
    percent: Percent
    methods: list[Method] = ["GET", "HEAD"]
    compare: Compare = Compare()
    max_in_flight: int = Field(default=64, ge=1)
    max_body_bytes: Size = MIB
    """Bodies (request or either answer) larger than this are not mirrored: counted as
    ``dropped`` with reason ``body_too_large``."""
    redact: list[str] = []
    """JSON field names whose values the discrepancy log replaces (besides the
    Authorization, Cookie and Set-Cookie headers, always redacted)."""
    pipeline: bool = True
    """Mirrored GETs go pipelined, a batch to a write (``proxy.shadow.pipe``); false
    sends each alone on a pooled connection, for a backend (or a proxy before it)
    that mishandles pipelined requests."""


FallbackTrigger = Annotated[str | int, BeforeValidator(parse_fallback_trigger)]


class Fallback(_Model):
    on: list[FallbackTrigger] = ["connect_error", "timeout", 502, 503, 504]
    methods: list[Method] = ["GET", "HEAD", "OPTIONS"]
    budget_percent: Percent = 20.0
    max_replay_body_bytes: Size = MIB


class Judge(_Model):
    """How sure the statistical tests (new against legacy) must be before they fail a step."""

    confidence: float = Field(default=0.98, gt=0.5, lt=1.0)
    """One-sided confidence a difference must reach to count (0.98: 2 % false alarms)."""
    min_effect: Percent = 10.0
    """A latency difference must also be at least this large (median shift, percent)."""


class Canary(_Model):
    steps: list[TrafficPercent] = Field(min_length=1)
    interval: PositiveDuration = 300.0
    min_requests: int = Field(default=100, ge=1)
    max_error_rate: Percent = 1.0
    max_p99: PositiveDuration = 0.8
    max_mismatch_rate: Percent | None = None
    max_error_rate_increase: Percent | None = 0.5
    """Percent points above legacy's error rate in the same interval (two-proportion test)."""
    max_p99_increase: Percent | None = 20.0
    """Percent above legacy's p99 in the same interval (tested on the share of slow requests)."""
    judge: Judge = Judge()
    max_inconclusive: int = Field(default=6, ge=1)
    """Inconclusive intervals in a row (too little traffic) before the canary pauses."""
    failures_to_rollback: int = Field(default=2, ge=1)
    confirm_promotion: bool = False
    """Hold before 100 % until `turnout promote FLAG`."""
    webhook: str | None = None
    """POSTed a JSON body at every transition."""
    prometheus_url: str | None = None
    """Judge on the fleet's numbers, read from this Prometheus (docs/canary.md)."""
    prometheus_lag: Duration = 15.0
    """How long after an interval's end Prometheus has stored its last scrapes."""

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[float]) -> list[float]:
        if value[0] <= 0:
            raise ValueError(f"steps must be greater than 0, got {value[0]:g}")
        for before, after in pairwise(value):
            if after <= before:
                raise ValueError(f"steps must increase strictly, got {before:g} then {after:g}")
        return value

    @field_validator("prometheus_url", "webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
            value = value.rstrip("/")
        return value


class FlagConfig(_Model):
    percent: TrafficPercent = 0.0
    targeting: Targeting = Targeting()
    shadow: Shadow | None = None
    fallback: Fallback | None = None
    canary: Canary | None = None
