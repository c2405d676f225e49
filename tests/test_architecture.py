"""The layering rules of docs/architecture.md, checked on the source.

Pure decision code (route matching, bucketing, the decision, the compiled
table, fallback rules, the health state machine, counters) must import no I/O,
so that it stays testable without sockets and cheap on the hot path.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROXY = Path(__file__).resolve().parents[1] / "proxy"

PURE = (
    "decision",
    "resilience/fallback.py",
    "resilience/health.py",
    "observe/stats.py",
    "canary/statistics.py",
    "canary/window.py",
    "canary/judge.py",
    "canary/machine.py",
    "canary/promql.py",
    "shadow/diff.py",
    "shadow/compare.py",
    "shadow/noise.py",
    "shadow/prune.py",
    "shadow/report.py",
    "shadow/sampling.py",
    "shadow/summary.py",
    "fleet/term.py",
    "fleet/view.py",
)
PURE_MAY_IMPORT = (
    "proxy.config.",
    "proxy.decision.",
    "proxy.resilience.fallback",
    "proxy.resilience.health",
    "proxy.observe.stats",
    "proxy.canary.statistics",
    "proxy.canary.window",
    "proxy.canary.judge",
    "proxy.shadow.diff",
    "proxy.shadow.compare",
    "proxy.shadow.noise",
    "proxy.shadow.prune",
)
IO_MODULES = {"asyncio", "socket", "ssl", "selectors", "subprocess", "aiohttp", "httptools"}
TOP_LEVEL_LIMIT = 5  # __init__, __main__, cli, log and at most one more
MODULE_LINE_LIMIT = 420


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        path = PROXY / entry
        files.extend(sorted(path.glob("*.py")) if path.is_dir() else [path])
    return files


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_pure_code_imports_no_io_and_nothing_outside_the_pure_layer() -> None:
    problems = []
    for path in _pure_files():
        for name in _imports(path):
            if name.split(".")[0] in IO_MODULES:
                problems.append(f"{path.relative_to(PROXY)} imports {name}")
            if name.startswith("proxy.") and not (name + ".").startswith(PURE_MAY_IMPORT):
                problems.append(f"{path.relative_to(PROXY)} imports {name}")
    assert problems == []


def test_the_top_level_holds_a_handful_of_modules_and_no_grab_bags() -> None:
    top = sorted(p.name for p in PROXY.glob("*.py"))
    assert len(top) <= TOP_LEVEL_LIMIT, top
    every = [p.stem for p in PROXY.rglob("*.py")]
    assert not {"utils", "helpers", "common", "misc"} & set(every)


def test_no_module_grows_past_the_size_limit() -> None:
    sizes = {
        str(p.relative_to(PROXY)): len(p.read_text().splitlines()) for p in PROXY.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MODULE_LINE_LIMIT} == {}
