"""Memory soak: is Turnout's resident memory flat under steady load?

    .venv/bin/python bench/soak.py                         # 10 min, 5,000 idle connections
    .venv/bin/python bench/soak.py --minutes 2 --idle 1000 # a quick look

One Turnout worker (the default loop) in front of the bench's nginx backends.
First ``--idle`` keep-alive connections are opened, each sends one request,
reads its answer and then stays open and silent for the whole soak (the
config raises ``limits.client_idle_timeout`` so they are not closed). Then wrk
keeps a steady load (``-c`` connections, one thread) for ``--minutes``, while
Turnout's RSS (``VmRSS`` of ``/proc/PID/status``) is sampled every
``--every`` seconds.

Reported: RSS before and after the idle connections (the memory one idle
keep-alive connection costs), every sample, and the growth from the sample at
``--settle`` seconds (warm-up: pools filled, caches full) to the last one. The
target is growth < 5 %. The JSON goes to ``bench/results/soak-latest.json``.
Everything listens on 127.0.0.1; every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/soak.py`: make `bench` importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import nginx, procs, turnout, wrk

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_GROWTH = 0.05
_LIMITS = "limits:\n  client_idle_timeout: 1h\n"
_REQUEST = b"GET /idle HTTP/1.1\r\nhost: soak\r\nx-user-id: u-%d\r\n\r\n"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


Idle = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open_idle(port: int, index: int) -> Idle:
    """One connection that asks once, reads the whole answer and then stays silent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_REQUEST % index)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return reader, writer


async def open_idle(port: int, count: int, batch: int = 200) -> list[Idle]:
    """``count`` idle keep-alive connections, opened ``batch`` at a time."""
    connections: list[Idle] = []
    for start in range(0, count, batch):
        group = range(start, min(count, start + batch))
        connections += await asyncio.gather(*(_open_idle(port, i) for i in group))
    return connections


def growth(samples: list[tuple[float, int]], settle_s: float) -> tuple[int, int, float]:
    """RSS at the first sample at or after ``settle_s``, the last RSS, and the growth."""
    settled = next((rss for t, rss in samples if t >= settle_s), samples[0][1])
    last = samples[-1][1]
    return settled, last, (last - settled) / settled


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the steady load")
    p.add_argument("--idle", type=int, default=5000, help="idle keep-alive connections")
    p.add_argument("--connections", type=int, default=20, help="wrk -c of the steady load")
    p.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--settle", type=float, default=60.0, help="warm-up seconds before growth")
    p.add_argument("--output", type=Path, default=RESULTS / "soak-latest.json")
    return p.parse_args(argv)


async def soak(args: argparse.Namespace, instance: turnout.Instance) -> dict[str, object]:
    port = int(instance.url.rsplit(":", 1)[1])
    before_idle = rss_kib(instance.pid)
    idle = await open_idle(port, args.idle)
    after_idle = rss_kib(instance.pid)
    per_conn = (after_idle - before_idle) * 1024 / max(1, args.idle)
    print(f"RSS {before_idle} KiB -> {after_idle} KiB with {args.idle} idle connections "
          f"(~{per_conn:.0f} bytes each)")  # fmt: skip
    seconds = round(args.minutes * 60)
    load = wrk.Load(1, args.connections, seconds)
    proc = await asyncio.create_subprocess_exec(
        *load.args(instance.url), stdout=asyncio.subprocess.PIPE
    )
    samples: list[tuple[float, int]] = []
    began = time.monotonic()
    try:
        while proc.returncode is None:
            samples.append((round(time.monotonic() - began, 1), rss_kib(instance.pid)))
            print(f"  t={samples[-1][0]:6.0f}s  RSS {samples[-1][1]} KiB", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), args.every)
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    samples.append((round(time.monotonic() - began, 1), rss_kib(instance.pid)))
    alive = sum(1 for reader, _ in idle if not reader.at_eof())  # Turnout closed none
    for _, writer in idle:
        writer.close()
    summary = wrk.parse(output)
    settled, last, grew = growth(samples, args.settle)
    return {
        "idle_connections": args.idle,
        "idle_still_open": alive,
        "rss_before_idle_kib": before_idle,
        "rss_after_idle_kib": after_idle,
        "bytes_per_idle_connection": round(per_conn),
        "load": {
            "connections": args.connections,
            "seconds": seconds,
            "rps": summary.rps,
            "requests": summary.requests,
            "errors": summary.errors,
        },
        "samples": samples,
        "rss_settled_kib": settled,
        "rss_last_kib": last,
        "growth": round(grew, 4),
        "goal_met": grew < GOAL_GROWTH,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.interrupt_on_sigterm()
    with (
        procs.temp_workdir("turnout-soak-") as workdir,
        nginx.backend(workdir / "backend") as backends,
        turnout.running(workdir / "turnout", backends, 1, limits=_LIMITS) as instance,
    ):
        report = asyncio.run(soak(args, instance))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    verdict = "met" if report["goal_met"] else "NOT met"
    print(f"RSS {report['rss_settled_kib']} KiB at {args.settle:.0f}s -> "
          f"{report['rss_last_kib']} KiB at the end: {report['growth']:+.1%} "
          f"(goal < {GOAL_GROWTH:.0%}: {verdict}); idle connections still open: "
          f"{report['idle_still_open']}/{args.idle}; wrk {report['load']}")  # fmt: skip
    print(f"wrote {args.output}")
    return 0 if report["goal_met"] and report["idle_still_open"] == args.idle else 1


if __name__ == "__main__":
    sys.exit(main())
