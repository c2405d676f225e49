"""The configuration as typed, immutable pydantic models (see SPEC §3).

Field names are the YAML keys. Values are normalised on the way in: durations
are seconds (float), percentages are percent numbers (``"1%"`` -> ``1.0``),
sizes are bytes, header names are lower-case, methods upper-case, and the short
YAML forms of sticky sources, listen addresses and header matches become their
model form. Reading a file, and turning validation errors into
``FILE:LINE: key.path: message`` lines, is ``proxy.config.loader``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from proxy.config.base import KIB, MIB, HeaderName, Method
from proxy.config.base import StrictModel as _Model
from proxy.config.flags import (
    Canary,
    Compare,
    Fallback,
    FlagConfig,
    Shadow,
    Targeting,
    TargetList,
)
from proxy.config.shorthand import check_route_path, parse_host_port, sticky_source_dict
from proxy.config.state_store import parse_state_store
from proxy.config.tls import BackendTls
from proxy.config.values import Duration, PositiveDuration, PositiveSize, check_header_name

# Flag and route names end up in metric labels and admin URLs (/flags/{name}/...).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
UNMATCHED_ROUTE = "unmatched"
"""The route label of requests that match no route; reserved as a route name."""


__all__ = [
    "MIB",
    "AdminConfig",
    "BackendConfig",
    "BackendTls",
    "Backends",
    "Canary",
    "Compare",
    "Config",
    "CoverageConfig",
    "Fallback",
    "FlagConfig",
    "HeaderMatch",
    "HealthCheck",
    "HostPort",
    "Limits",
    "Method",
    "OutlierDetection",
    "RouteConfig",
    "Shadow",
    "StickySource",
    "TargetList",
    "Targeting",
    "Timeouts",
]


class HostPort(_Model):
    """A listen address. YAML: ``"0.0.0.0:8080"``, ``":8080"``, ``"[::1]:8080"``."""

    host: str
    port: int = Field(ge=0, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_host_port(value)
        if isinstance(value, HostPort | dict):
            return value
        raise ValueError(f"expected HOST:PORT such as 0.0.0.0:8080, got {value!r}")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class AdminConfig(_Model):
    listen: HostPort = HostPort(host="127.0.0.1", port=9901)
    token_env: str | None = "TURNOUT_ADMIN_TOKEN"
    """Environment variable holding the bearer token; unset or empty = mutations refused."""


class Timeouts(_Model):
    connect: PositiveDuration = 1.0
    response: PositiveDuration = 30.0
    """One attempt, until the response headers arrive."""
    idle: PositiveDuration = 60.0
    """Streams: longest silence while reading or writing a body."""


class HealthCheck(_Model):
    path: str = "/health"
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 1.0
    unhealthy_threshold: int = Field(default=2, ge=1)
    healthy_threshold: int = Field(default=2, ge=1)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value


class OutlierDetection(_Model):
    """Passive ejection, as Envoy's ``consecutive_5xx``: after this many failures in a
    row (connect errors, timeouts, 5xx) the backend is ejected for
    ``base_ejection_time`` times the number of ejections so far, at most
    ``max_ejection_time``."""

    consecutive_failures: int = Field(default=5, ge=1)
    base_ejection_time: PositiveDuration = 30.0
    max_ejection_time: PositiveDuration = 300.0


class BackendConfig(_Model):
    url: str
    """``http(s)://host[:port]``, stored without a trailing slash."""
    timeouts: Timeouts = Timeouts()
    health: HealthCheck | None = None
    """Active health checks; none unless configured (a backend without the
    endpoint would otherwise be marked down)."""
    outlier_detection: OutlierDetection = OutlierDetection()
    max_idle_connections: int = Field(default=512, ge=1)
    """Idle keep-alive connections kept per backend."""
    max_connections: int = Field(default=1024, ge=1)
    """Connections in use or being opened per backend (Envoy's circuit breaker): beyond
    it a request waits for one, up to ``timeouts.connect``, then is answered 503."""
    tls: BackendTls | None = None
    """TLS settings of an ``https://`` backend (verified against the system CAs without)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"invalid URL {value!r}: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        if not parts.hostname:
            raise ValueError(f"has no host: {value!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not contain credentials")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"must be scheme://host[:port] without a path, query or fragment, got {value!r}"
            )
        if port == 0:
            raise ValueError("port must not be 0")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_needs_https(self) -> BackendConfig:
        if self.tls is not None and self.scheme != "https":
            raise ValueError(
                f"tls is set but the url is {self.url}: write https:// to speak TLS to this backend"
            )
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """The host name or address, without the brackets of an IPv6 literal."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        explicit = urlsplit(self.url).port
        if explicit is not None:
            return explicit
        return 443 if self.scheme == "https" else 80


class Backends(_Model):
    legacy: BackendConfig
    new: BackendConfig


StickyKind = Literal["jwt_claim", "cookie", "header", "client_ip"]


class StickySource(_Model):
    """One bucketing-key source.

    YAML forms: ``client_ip``; ``cookie: NAME``; ``header: NAME``;
    ``jwt_claim: {cookie: NAME, claim: sub}`` or ``jwt_claim: {header: NAME, claim: sub}``.
    For ``jwt_claim``, ``name`` is the cookie or header carrying the token and
    ``jwt_in`` says which. Header names are lower-case, cookie names as written.
    """

    kind: StickyKind
    name: str | None = None
    claim: str | None = None
    jwt_in: Literal["cookie", "header"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if isinstance(value, StickySource):
            return value
        value = sticky_source_dict(value)
        if value.get("kind") == "header" or value.get("jwt_in") == "header":
            name = value.get("name")
            if isinstance(name, str):
                value = {**value, "name": check_header_name(name)}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StickySource:
        if self.kind == "client_ip":
            if self.name is not None or self.claim is not None or self.jwt_in is not None:
                raise ValueError("client_ip takes no name, claim or jwt_in")
        elif not self.name:
            raise ValueError(f"{self.kind} needs a name")
        elif self.kind == "jwt_claim" and (not self.claim or self.jwt_in is None):
            raise ValueError("jwt_claim needs a claim and jwt_in (cookie or header)")
        elif self.kind != "jwt_claim" and (self.claim is not None or self.jwt_in is not None):
            raise ValueError(f"{self.kind} takes no claim or jwt_in")
        return self


class HeaderMatch(_Model):
    """``{name: x-canary}`` (header present) or ``{name: x-canary, value: "1"}``.

    A bare string is taken as the name.
    """

    name: HeaderName
    value: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class RouteConfig(_Model):
    path: Annotated[str, AfterValidator(check_route_path)]
    methods: list[Method] | None = Field(default=None, min_length=1)
    header: HeaderMatch | None = None
    flag: str
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None:
            if not _NAME.fullmatch(value):
                raise ValueError(
                    f"{value!r} is not a valid route name (letters, digits, '_', '.', '-')"
                )
            if value == UNMATCHED_ROUTE:
                raise ValueError(f"{UNMATCHED_ROUTE!r} is reserved for requests matching no route")
        return value

    @property
    def label(self) -> str:
        """The bounded ``route`` metric label: the name, else the path pattern."""
        return self.name if self.name is not None else self.path


class CoverageConfig(_Model):
    """The two OpenAPI documents (file paths or URLs) behind the coverage in ``/status``."""

    legacy_openapi: str = Field(min_length=1)
    new_openapi: str = Field(min_length=1)


class Limits(_Model):
    max_header_bytes: PositiveSize = 16 * KIB
    """The whole request head: request line plus headers."""
    max_line_bytes: PositiveSize = 8 * KIB
    max_body_bytes: PositiveSize = 100 * MIB
    client_idle_timeout: PositiveDuration = 60.0
    listen_backlog: int = Field(default=4096, ge=1, le=65535)
    """Connections the kernel queues before the proxy accepts them (the kernel caps it
    at net.core.somaxconn)."""


def _flag_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid flag name (letters, digits, '_', '.', '-'; "
            "no leading punctuation)"
        )
    return value


FlagName = Annotated[str, AfterValidator(_flag_name)]


def reference_problems(
    flag_names: Iterable[str], routes: Iterable[tuple[object, object]]
) -> list[tuple[int, str, str]]:
    """Cross-references between routes and flags, as ``(route index, field, message)``.

    ``routes`` is ``(flag, name)`` per route in file order; values that are not
    strings are skipped (their type error is reported elsewhere). Shared by
    ``Config`` and the loader, which runs it on the raw YAML so that these
    errors show up together with every other error of the file.
    """
    known = set(flag_names)
    defined = ", ".join(sorted(known)) or "none"
    seen: dict[str, int] = {}
    problems: list[tuple[int, str, str]] = []
    for index, (flag, name) in enumerate(routes):
        if isinstance(flag, str) and flag not in known:
            problems.append((index, "flag", f"unknown flag {flag!r} (defined flags: {defined})"))
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    (index, "name", f"duplicate route name {name!r} (also routes[{seen[name]}])")
                )
            else:
                seen[name] = index
    return problems


class Config(_Model):
    listen: HostPort = HostPort(host="0.0.0.0", port=8080)
    admin: AdminConfig = AdminConfig()
    state_file: str | None = None
    state_store: str | None = None
    """``redis://HOST:PORT/DB?name=DEPLOYMENT``: runtime state shared by a fleet of
    replicas (``proxy.config.state_store``); without it, ``state_file``."""
    discrepancy_log: str | None = None
    request_timeout: PositiveDuration = 60.0
    drain_timeout: Duration = 30.0
    backends: Backends
    sticky: list[StickySource] = Field(default_factory=lambda: [StickySource(kind="client_ip")])
    force_header: HeaderName | None = None
    sticky_cookie: bool = True
    access_log: bool = False
    limits: Limits = Limits()
    flags: dict[FlagName, FlagConfig] = {}
    routes: list[RouteConfig] = []
    coverage: CoverageConfig | None = None

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Config:
        # The loader checks references on the raw YAML itself (with line numbers)
        # and turns this check off; it is here for configs built in Python.
        if isinstance(info.context, dict) and info.context.get("skip_reference_check"):
            return self
        problems = reference_problems(self.flags, ((r.flag, r.name) for r in self.routes))
        if problems:
            raise ValueError(
                "; ".join(f"routes[{index}].{fld}: {msg}" for index, fld, msg in problems)
            )
        return self

    @field_validator("state_store")
    @classmethod
    def _state_store(cls, value: str | None) -> str | None:
        if value is not None:
            parse_state_store(value)
        return value

    def route_flag(self, route: RouteConfig) -> FlagConfig:
        """The flag a route points at (always defined in a valid config)."""
        return self.flags[route.flag]
