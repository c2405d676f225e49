"""Turnout benchmark: wrk against a fast nginx backend, nginx as a proxy, and Turnout.

    .venv/bin/python bench/run.py                      # all targets, 3 runs of 10 s each
    .venv/bin/python bench/run.py --only backend,nginx --runs 1 --duration 5
    .venv/bin/python bench/run.py --only turnout-1 --profile
    .venv/bin/python bench/run.py --connections 200    # burst check

See bench/README.md for what the targets and numbers mean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import nginx, procs, pyspy, turnout, wrk
from bench.procs import tail

TARGETS = ("backend", "nginx", "turnout-1", "turnout-1-asyncio", "turnout-2", "turnout-shadow")
# Turnout targets: (workers, shadow every GET of the flag, TURNOUT_LOOP or None: the default)
_TURNOUT = {"turnout-1": (1, False, None), "turnout-1-asyncio": (1, False, "asyncio"),
            "turnout-2": (2, False, None), "turnout-shadow": (1, True, None),
            "baseline-1": (1, False, None), "baseline-shadow": (1, True, None)}  # fmt: skip
ALIASES = {"turnout": ("turnout-1", "turnout-2"), "all": TARGETS}
RESULTS = Path(__file__).resolve().parent / "results"
HISTORY = RESULTS / "history.jsonl"  # kept in git: one line per run, to see regressions
GOAL_RATIO = 0.35  # Turnout 1 worker vs nginx 1 worker, wrk -t1 -c50


@dataclass
class Result:
    target: str
    summary: wrk.Summary
    checks: list[turnout.MetricsCheck] = field(default_factory=list)
    ratio: float | None = None
    cpu_ratio: float | None = None  # CPU per request relative to nginx's

    def to_json(self) -> dict[str, Any]:
        out = {
            "target": self.target,
            **self.summary.to_json(),
            "ratio_to_nginx": self.ratio,
            "cpu_ratio_to_nginx": self.cpu_ratio,
        }
        if self.checks:
            out["metrics_checks"] = [c.to_json() for c in self.checks]
        return out


@dataclass(frozen=True)
class Options:
    load: wrk.Load
    runs: int
    warmup_s: int
    profile: bool
    loop: str | None
    workdir: Path
    baseline: Path | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default="all", help=f"comma list of {', '.join(TARGETS)}, turnout")
    p.add_argument("--runs", type=int, default=3, help="wrk runs per target (median is reported)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (200 = burst check)")
    p.add_argument("--threads", type=int, default=1, help="wrk -t")
    p.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load per target")
    p.add_argument("--profile", action="store_true", help="py-spy the first turnout-1 run")
    p.add_argument(
        "--loop", choices=("uvloop", "asyncio"), help="TURNOUT_LOOP for the Turnout targets"
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also run turnout-1 from another checkout (e.g. a `git worktree` of the commit "
        "before a change) as target `baseline-1` (and `baseline-shadow` with turnout-shadow), "
        "in the same run",
    )
    args = p.parse_args(argv)
    if min(args.runs, args.duration, args.connections, args.threads) < 1:
        p.error("--runs, --duration, --connections and --threads must be >= 1")
    if args.threads > args.connections:
        p.error("--threads must be <= --connections")
    args.targets = select(args.only, p)
    if args.baseline is not None:
        if not (args.baseline / "proxy" / "__main__.py").is_file():
            p.error(f"--baseline {args.baseline}: not a Turnout checkout (no proxy/__main__.py)")
        args.targets.append("baseline-1")
        if "turnout-shadow" in args.targets:
            args.targets.append("baseline-shadow")
    return args


def select(only: str, parser: argparse.ArgumentParser) -> list[str]:
    wanted: set[str] = set()
    for name in filter(None, (x.strip() for x in only.split(","))):
        if name in ALIASES:
            wanted.update(ALIASES[name])
        elif name in TARGETS:
            wanted.add(name)
        else:
            parser.error(f"unknown target {name!r}; choose from {', '.join(TARGETS)}, turnout")
    return [t for t in TARGETS if t in wanted]


@dataclass
class Started:
    """A target under test, started and waiting for load."""

    target: str
    url: str
    instance: turnout.Instance | None  # Turnout's (for /metrics checks and profiling)
    pid: int  # whose process tree's CPU is counted (0: none, the backend itself)
    runs: list[wrk.WrkRun] = field(default_factory=list)
    checks: list[turnout.MetricsCheck] = field(default_factory=list)

    def result(self) -> Result:
        return Result(self.target, wrk.Summary.of(self.runs), self.checks)


def measure_all(started: list[Started], opts: Options) -> list[Result]:
    """Warm every target up, then ``opts.runs`` rounds of one wrk run per target.

    Interleaved: the host's speed drifts (here by 2 x within an hour), and a
    drift during one target's block of runs would show as a difference between
    targets; round by round, it hits them all alike.
    """
    for one in started:
        print(f"[{one.target}] {one.url}  warmup {opts.warmup_s}s")
        if opts.warmup_s:
            wrk.run(one.url, wrk.Load(opts.load.threads, opts.load.connections, opts.warmup_s))
    for i in range(opts.runs):
        for one in started:
            run, check = one_run(f"[{one.target}] run {i + 1}", one.url, opts, one.instance,
                                 one.pid)  # fmt: skip
            one.runs.append(run)
            if check:
                one.checks.append(check)
    for one in started:
        if opts.profile and one.instance and one.target in ("turnout-1", "turnout-shadow"):
            profile_run(one.url, opts, one.instance)
    return [one.result() for one in started]


def one_run(
    label: str, url: str, opts: Options, instance: turnout.Instance | None, pid: int = 0
) -> tuple[wrk.WrkRun, turnout.MetricsCheck | None]:
    """One wrk run; for Turnout, the /metrics delta over the run is compared with wrk's count.
    With ``pid``, the CPU that process and its children spent per request is recorded."""
    before = turnout.scrape_requests_total(instance.admin_url) if instance else 0.0
    tree = procs.process_tree(pid) if pid else []
    cpu_before = procs.cpu_seconds(tree)
    run = wrk.run(url, opts.load)
    if tree and run.requests:
        run.cpu_us_per_request = (procs.cpu_seconds(tree) - cpu_before) / run.requests * 1e6
    cpu = f"  cpu {run.cpu_us_per_request:.1f} us/req" if run.cpu_us_per_request else ""
    print(
        f"  {label}: {run.rps:10.0f} req/s  p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms"
        f"  errors {run.errors}{cpu}"
    )
    if instance is None:
        return run, None
    time.sleep(0.5)  # let the last in-flight requests be counted
    after = turnout.scrape_requests_total(instance.admin_url)
    check = turnout.MetricsCheck(run.requests, after - before)
    print(f"  {check.describe()}")
    return run, check


def profile_run(url: str, opts: Options, instance: turnout.Instance) -> None:
    """An extra run under py-spy, not in the reported median (sampling costs CPU too)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out, log = RESULTS / "profile.collapsed.txt", RESULTS / "profile.log"
    out.unlink(missing_ok=True)
    proc = pyspy.start_record(instance.pid, max(1, opts.load.duration_s - 1), out, log)
    try:
        one_run("profiled run (not in the median)", url, opts, instance, instance.pid)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report_profile(out, log)


def report_profile(out: Path, log: Path) -> None:
    if not out.exists():
        print(f"py-spy wrote no profile:\n{tail(log)}")
        return
    table = pyspy.format_top(pyspy.top_table(out.read_text()))
    (RESULTS / "profile.top.txt").write_text(table + "\n")
    print(f"\npy-spy: {out} (collapsed stacks: speedscope.app or flamegraph.pl read them)")
    print("top 15 functions by own time (leaf samples):")
    print(table + "\n")


@contextmanager
def start_target(target: str, opts: Options, backends: nginx.Backends) -> Iterator[Started]:
    if target == "backend":
        yield Started(target, backends.url("legacy"), None, 0)
        return
    if target == "nginx":
        with nginx.proxy(opts.workdir / "nginx-proxy", backends) as (url, pid):
            yield Started(target, url, None, pid)
        return
    workers, shadow, loop = _TURNOUT[target]
    repo = opts.baseline if target.startswith("baseline") else None
    with turnout.running(
        opts.workdir / target, backends, workers, loop or opts.loop, repo, shadow
    ) as inst:
        started = Started(target, inst.url, inst, inst.pid)
        try:
            yield started
        except Exception:
            print(f"--- {inst.log} (tail) ---\n{tail(inst.log)}", file=sys.stderr)
            raise
        if sum(run.errors for run in started.runs):
            print(f"--- {target} had errors; its log ends with ---\n{tail(inst.log, 5)[-3000:]}")


def add_ratios(results: list[Result]) -> None:
    nginx_result = next((r for r in results if r.target == "nginx"), None)
    base = nginx_result.summary.rps if nginx_result else None
    base_cpu = nginx_result.summary.cpu_us_per_request if nginx_result else None
    for r in results:
        r.ratio = r.summary.rps / base if base else None
        cpu = r.summary.cpu_us_per_request
        r.cpu_ratio = cpu / base_cpu if cpu is not None and base_cpu else None


def format_table(results: list[Result]) -> str:
    head = (
        f"{'target':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx':>9} {'errors':>7}"
        f" {'cpu us/req':>11} {'cpu x nginx':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        s = r.summary
        ratio = f"{r.ratio:8.0%}" if r.ratio is not None else f"{'-':>8}"
        cpu = f"{s.cpu_us_per_request:11.1f}" if s.cpu_us_per_request else f"{'-':>11}"
        cpu_ratio = f"{r.cpu_ratio:11.2f}x" if r.cpu_ratio is not None else f"{'-':>12}"
        lines.append(
            f"{r.target:<10} {s.rps:10.0f} {s.p50_ms:8.2f} {s.p99_ms:8.2f} {ratio:>9} {s.errors:7d}"
            f" {cpu} {cpu_ratio}"
        )
    return "\n".join(lines)


def meta(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _commit(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg()[0],
        "python": platform.python_version(),
        "nginx": nginx.version(),
        "wrk": wrk.version(),
        "wrk_args": {"threads": args.threads, "connections": args.connections,
                     "duration_s": args.duration, "runs": args.runs},
        "turnout_loop": args.loop or "uvloop (default)",
        "users": 10_000,
        "split": "30% new, sticky on x-user-id",
    }  # fmt: skip


def verdicts(results: list[Result]) -> list[str]:
    """Lines explaining why the run failed; empty when all is well."""
    bad = [f"{r.target}: {r.summary.errors} errors (non-2xx or socket)" for r in results
           if r.summary.errors]  # fmt: skip
    bad += [f"{r.target}: {c.describe()}" for r in results for c in r.checks if not c.ok]
    return bad


def goal_line(results: list[Result], load: wrk.Load) -> str | None:
    t1 = next((r for r in results if r.target == "turnout-1"), None)
    if t1 is None or t1.ratio is None:
        return None
    verdict = "met" if t1.ratio >= GOAL_RATIO else "NOT met"
    line = f"goal turnout-1 >= {GOAL_RATIO:.0%} of nginx: {t1.ratio:.0%} -> {verdict}"
    if (load.threads, load.connections) != (1, 50):
        line += " (the goal is defined for wrk -t1 -c50; this run is informative only)"
    return line


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.interrupt_on_sigterm()
    info = meta(args)
    if info["loadavg_before"] > 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: machine already busy (loadavg {info['loadavg_before']:.2f}); numbers noisy"
        )
    load = wrk.Load(args.threads, args.connections, args.duration)
    opts = Options(load, args.runs, args.warmup, args.profile,
                   args.loop, procs.make_workdir("turnout-bench-"), args.baseline)  # fmt: skip
    results: list[Result] = []
    try:
        with nginx.backend(opts.workdir / "backend") as backends, ExitStack() as stack:
            started = [stack.enter_context(start_target(target, opts, backends))
                       for target in args.targets]  # fmt: skip
            results = measure_all(started, opts)
    finally:
        if args.keep:
            print(f"kept {opts.workdir} (configs and logs)")
        else:
            shutil.rmtree(opts.workdir, ignore_errors=True)
    add_ratios(results)
    print("\n" + format_table(results))
    goal = goal_line(results, opts.load)
    if goal:
        print(goal)
    problems = verdicts(results)
    write_json(args.output, info, results, problems)
    for line in problems:
        print(f"FAIL {line}", file=sys.stderr)
    return 1 if problems else 0


def write_json(
    path: Path, info: dict[str, Any], results: list[Result], problems: list[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": info, "results": [r.to_json() for r in results], "problems": problems}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    with HISTORY.open("a", encoding="utf-8") as history:
        history.write(json.dumps(history_line(info, results), sort_keys=True) + "\n")
    print(f"appended a line to {HISTORY.relative_to(HISTORY.parent.parent.parent)}")


def history_line(info: dict[str, Any], results: list[Result]) -> dict[str, Any]:
    """One run in a line: when, which commit, the load, and per target the medians."""
    return {
        "time": info["time"],
        "commit": info.get("commit"),
        "load": info["wrk_args"],
        "loop": info["turnout_loop"],
        "loadavg_before": info["loadavg_before"],
        "targets": {
            r.target: {
                "rps": round(r.summary.rps),
                "p99_ms": r.summary.p99_ms,
                "cpu_us_per_request": r.summary.cpu_us_per_request,
                "cpu_ratio_to_nginx": r.cpu_ratio,
                "errors": r.summary.errors,
            }
            for r in results
        },
    }


def _commit() -> str | None:
    """The checked-out commit (with "+dirty" for local changes), or None outside git."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=RESULTS.parent, capture_output=True,
                              text=True, timeout=10, check=True)  # fmt: skip
        return done.stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short=12", "HEAD"), git("status", "--porcelain", "proxy")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
