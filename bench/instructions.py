"""Instructions per request: Turnout's cost counted by callgrind, not timed.

    .venv/bin/python bench/instructions.py                 # turnout-1 and turnout-shadow
    .venv/bin/python bench/instructions.py --requests 2000
    .venv/bin/python bench/instructions.py --connections 16   # concurrent, under wrk

CPU time per request (bench/run.py) swings with whatever else the machine is
doing; the number of instructions a request takes does not. This runs one
Turnout worker under ``valgrind --tool=callgrind`` (about 50 times slower, so
the load is small and sequential), warms it up, zeroes the counters, sends
``--requests`` keep-alive GETs with varied user ids, and reads the
instructions executed meanwhile (``callgrind_control``). Use it to compare two
builds of the same code path (``--repo`` runs another checkout): a change of a
few percent shows here when timing cannot see it. Needs Debian's valgrind;
nginx for the backends as bench/run.py.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/instructions.py`: make `bench` importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import nginx, procs, turnout, wrk

READY_DEADLINE_S = 240.0  # Python starts slowly under callgrind
CONCURRENT_SECONDS = 20
_TOTAL = re.compile(r"^(?:totals|summary):\s+(\d+)", re.M)


def _requests(port: int, count: int, start: int = 0) -> None:
    """``count`` keep-alive GETs, each with its own user id; every answer must be 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for user in range(start, start + count):
            connection.request("GET", "/api/items", headers={"x-user-id": f"user-{user}"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"request {user}: status {response.status}")
    finally:
        connection.close()


def _control(*args: str) -> str:
    done = subprocess.run(["callgrind_control", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def measure(
    repo: Path,
    shadow: bool,
    count: int,
    workdir: Path,
    backends: nginx.Backends,
    connections: int = 1,
) -> float:
    """Instructions per request of one Turnout worker (``shadow``: every GET mirrored):
    ``count`` sequential requests, or with ``connections`` > 1, wrk's load for
    ``CONCURRENT_SECONDS`` (wrk's count; the few requests in flight at its end are
    not counted, well under 1 %)."""
    port, admin = procs.free_port(), procs.free_port()
    config = workdir / f"turnout-{'shadow' if shadow else 'plain'}.yaml"
    config.write_text(turnout.config(workdir, backends, port, admin, shadow))
    out = workdir / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
               sys.executable, "-m", "proxy", "serve", "-c", str(config)]  # fmt: skip
    proc = procs.start(command, workdir / "turnout.log", cwd=repo, env=dict(os.environ))
    try:
        procs.wait_ready(f"http://127.0.0.1:{admin}/readyz", proc, READY_DEADLINE_S,
                         workdir / "turnout.log")  # fmt: skip
        if connections > 1:  # concurrent: what batching (e.g. of shadow copies) saves
            url = f"http://127.0.0.1:{port}"
            wrk.run(url, wrk.Load(1, connections, 10))  # warm-up
            time.sleep(1.0)
            _control("--zero", str(proc.pid))
            count = wrk.run(url, wrk.Load(1, connections, CONCURRENT_SECONDS)).requests
        else:
            _requests(port, 300)  # warm-up: pools, caches, the first shadows
            time.sleep(1.0)  # let the warm-up's shadows finish before the counters are zeroed
            _control("--zero", str(proc.pid))
            _requests(port, count, start=300)
        time.sleep(1.5)  # and the measured requests' shadows
        _control("--dump=measured", str(proc.pid))
    finally:
        procs.stop(proc, grace_s=30)
    dumps = sorted(workdir.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    measured = next(d for d in dumps if "measured" in d.read_text(errors="replace")[:2000])
    total = _TOTAL.search(measured.read_text(errors="replace"))
    if total is None:
        raise RuntimeError(f"no instruction total in {measured}")
    for dump in dumps:
        dump.unlink()
    return int(total.group(1)) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repo", type=Path, default=turnout.REPO, help="the checkout to run")
    parser.add_argument(
        "--connections", type=int, default=1, help="> 1: wrk's load on this many connections"
    )
    args = parser.parse_args(argv)
    procs.interrupt_on_sigterm()
    with (
        procs.temp_workdir("turnout-instructions-") as workdir,
        nginx.backend(workdir / "backend") as backends,
    ):
        plain = measure(args.repo, False, args.requests, workdir, backends, args.connections)
        print(f"turnout-1       {plain:12,.0f} instructions per request")
        mirrored = measure(args.repo, True, args.requests, workdir, backends, args.connections)
        print(f"turnout-shadow  {mirrored:12,.0f} instructions per request "
              f"(+{mirrored / plain - 1:.0%})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
