"""Run wrk and parse its text report (`--latency` output)."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WRK = shutil.which("wrk") or "/usr/bin/wrk"
USERS_LUA = Path(__file__).resolve().parent / "users.lua"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_RE_DURATION = re.compile(r"^([0-9.]+)(us|ms|s|m|h)$")
_RE_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+(\S+)\s*$", re.M)
_RE_REQUESTS = re.compile(r"^\s*(\d+) requests in ([0-9.]+\w+),", re.M)
_RE_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_RE_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass
class WrkRun:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    cpu_us_per_request: float | None = None  # the proxy's user+system CPU over the run

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors}


@dataclass(frozen=True)
class Load:
    threads: int = 1
    connections: int = 50
    duration_s: int = 10
    timeout_s: int = 5

    def args(self, url: str, script: Path = USERS_LUA) -> list[str]:
        return [
            WRK,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{self.duration_s}s",
            f"--timeout={self.timeout_s}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]


def to_ms(text: str) -> float:
    """'812.00us' -> 0.812, '1.23ms' -> 1.23, '2.00s' -> 2000.0, '1.5m' -> 90000.0."""
    match = _RE_DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse(output: str) -> WrkRun:
    """Parse the report wrk prints with `--latency`."""
    percentiles = {int(p): to_ms(v) for p, v in _RE_PERCENTILE.findall(output)}
    requests = _RE_REQUESTS.search(output)
    rps = _RE_RPS.search(output)
    if requests is None or rps is None or 50 not in percentiles or 99 not in percentiles:
        raise ValueError(f"unexpected wrk output:\n{output}")
    socket = _RE_SOCKET.search(output)
    socket_errors = {}
    if socket:
        names = ("connect", "read", "write", "timeout")
        socket_errors = {n: int(v) for n, v in zip(names, socket.groups(), strict=True)}
    non2xx = _RE_NON2XX.search(output)
    return WrkRun(
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors,
    )


def run(url: str, load: Load) -> WrkRun:
    """One bounded wrk run against `url` (must answer on `/`)."""
    args = load.args(url.rstrip("/") + "/")
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=load.duration_s + load.timeout_s + 30
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    return parse(out.stdout)


@dataclass
class Summary:
    """Medians over several runs; errors and requests are summed."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    runs: list[WrkRun]
    cpu_us_per_request: float | None = None

    @classmethod
    def of(cls, runs: list[WrkRun]) -> Summary:
        if not runs:
            raise ValueError("no runs")
        return cls(
            rps=statistics.median(r.rps for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            requests=sum(r.requests for r in runs),
            errors=sum(r.errors for r in runs),
            runs=runs,
            cpu_us_per_request=_median_or_none([r.cpu_us_per_request for r in runs]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 2),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "requests": self.requests,
            "errors": self.errors,
            "cpu_us_per_request": self.cpu_us_per_request,
            "runs": [r.to_json() for r in self.runs],
        }


def version() -> str:
    out = subprocess.run([WRK, "-v"], capture_output=True, text=True, timeout=10)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None

