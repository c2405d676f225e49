"""The example pair as real processes: uvicorn (legacy FastAPI) and node (new NestJS).

A ``ServiceProcess`` starts its service on a free 127.0.0.1 port, waits for
``/health`` with a deadline, and stops it by PID. ``kill()`` then ``start()``
simulates a crash and a restart on the same port, for the error-path tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import IO

from tests.support.tools import unavailable

ROOT = Path(__file__).resolve().parents[2]
LEGACY_DIR = ROOT / "examples" / "legacy-fastapi"
NEW_DIR = ROOT / "examples" / "new-nestjs"
START_TIMEOUT = 30.0  # node on a busy 2-core machine takes a few seconds
STOP_TIMEOUT = 10.0
TEST_ENV = {"EXAMPLE_TEST_HOOKS": "1", "EXAMPLE_SEED": "turnout-tests"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    """One service process; ``url`` is its base URL, stable across restarts."""

    name: str
    argv: list[str]
    cwd: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and return once ``/health`` answers 200."""
        if self.running:
            return
        env = {**os.environ, **TEST_ENV, **self.env, "PORT": str(self.port)}
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_healthy(timeout)
        except RuntimeError:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self._healthy():
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"{self.name} exited with {code} on start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not answer {self.url}/health within {timeout}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """SIGKILL by PID, as a crash: no graceful close of its connections."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self._close_log()

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it is still there after ``STOP_TIMEOUT``."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def legacy_fastapi_process(log_dir: Path) -> ServiceProcess:
    """uvicorn serving ``legacy_app.main:app``; skips/fails if fastapi or uvicorn is missing."""
    for module in ("fastapi", "uvicorn"):
        if find_spec(module) is None:
            unavailable(f"{module} is missing: pip install -e '.[examples]' (or make install)")
    service = ServiceProcess("legacy-fastapi", [], LEGACY_DIR, log_dir / "legacy-fastapi.log")
    service.argv = [
        sys.executable, "-m", "uvicorn", "legacy_app.main:app",
        "--host", "127.0.0.1", "--port", str(service.port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return service


def new_nestjs_process(log_dir: Path) -> ServiceProcess:
    """node serving the compiled NestJS app; skips/fails if node or the build is missing."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (Debian: apt-get install nodejs npm)")
    if not (NEW_DIR / "node_modules").is_dir():
        unavailable(f"the npm packages are not installed: run `npm ci` in {NEW_DIR}")
    if not (NEW_DIR / "dist" / "main.js").is_file():
        unavailable(f"the NestJS app is not built: run `npm run build` in {NEW_DIR}")
    return ServiceProcess(
        "new-nestjs",
        [node, "dist/main.js"],
        NEW_DIR,
        log_dir / "new-nestjs.log",
        env={"HOST": "127.0.0.1"},
    )
