"""py-spy sampling of a running Turnout, and a top-N "own time" table."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
_LINE_NO = re.compile(r"^(.*) \(([^()]*?)(?::\d+)?\)$")


def start_record(pid: int, duration_s: int, out: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start `py-spy record --format raw` (collapsed stacks) on `pid` and its workers.

    The collapsed-stack file loads as is in https://www.speedscope.app and in
    flamegraph.pl, so one recording serves both the flame graph and the top table.
    """
    args = [
        PY_SPY, "record",
        "--format", "raw",
        "--duration", str(duration_s),
        "--rate", "200",
        "--pid", str(pid),
        "--subprocesses",
        "--nonblocking",
        "--output", str(out),
    ]  # fmt: skip
    with log.open("ab") as err:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)


def frame_name(frame: str) -> str:
    """'handle (proxy/app.py:42)' -> 'handle (proxy/app.py)': aggregate by function."""
    match = _LINE_NO.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match.group(1)} ({match.group(2)})"


def own_time(collapsed: str) -> tuple[Counter[str], int]:
    """Leaf-frame sample counts from collapsed stacks ('a;b;c 12' lines), and the total."""
    counts: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, num = line.rpartition(" ")
        if not stack or not num.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        counts[frame_name(leaf)] += int(num)
        total += int(num)
    return counts, total


def top_table(collapsed: str, n: int = 15) -> list[tuple[str, int, float]]:
    """The `n` functions with most own samples: (function, samples, share)."""
    counts, total = own_time(collapsed)
    return [(name, c, c / total if total else 0.0) for name, c in counts.most_common(n)]


def format_top(rows: list[tuple[str, int, float]]) -> str:
    lines = [f"{'own %':>6}  {'samples':>7}  function"]
    lines += [f"{share:6.1%}  {count:7d}  {name}" for name, count, share in rows]
    return "\n".join(lines)
