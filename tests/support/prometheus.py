"""A real Prometheus (Debian's package) for the dashboard and canary tests: started on
127.0.0.1 with a temporary data directory, scraping given targets every second,
stopped by PID.

Without a ``prometheus`` binary the tests that need one are skipped with the
command to install it; with ``CI`` set they fail instead (as tests/examples do).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.runtime.test_serve_process import free_port
from tests.support.tools import required_binary

INSTALL = "apt-get install -y --no-install-recommends prometheus"


def prometheus_binary() -> str:
    return required_binary("prometheus", INSTALL)


@dataclass
class Prometheus:
    """A running Prometheus and its HTTP API."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    async def get(self, path: str, **params: str) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}{path}", params=params) as response,
        ):
            body: dict[str, Any] = await response.json(content_type=None)
            return response.status, body

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result; a query Prometheus cannot parse fails the test."""
        status, body = await self.get("/api/v1/query", query=expr)
        assert status == 200, f"{expr!r}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for_data(self, expr: str, timeout: float) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns series (the first scrape takes ~6 s)."""
        deadline = time.monotonic() + timeout
        while not (result := await self.query(expr)):
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no data for {expr!r} within {timeout:g} s")
            await asyncio.sleep(0.5)
        return result


def _config(targets: list[str], rule_file: Path | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "turnout", "static_configs": [{"targets": targets}]}],
    }
    if rule_file is not None:
        config["rule_files"] = [str(rule_file)]
    return config


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Any]:
    """``await start_prometheus(["127.0.0.1:ADMIN"], rule_file)`` -> a ready ``Prometheus``."""
    binary = prometheus_binary()
    started: list[subprocess.Popen[bytes]] = []

    async def start(targets: list[str], rule_file: Path | None = None) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(_config(targets, rule_file)))
        port, log = free_port(), tmp_path / "prometheus.log"
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ]
        process = _spawn(command, log)
        started.append(process)
        prometheus = Prometheus(process, f"http://127.0.0.1:{port}", log)
        await _wait_ready(prometheus)
        return prometheus

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


async def _wait_ready(prometheus: Prometheus, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if prometheus.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {prometheus.log.read_text()[-2000:]}")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{prometheus.url}/-/ready") as response,
            ):
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"prometheus not ready within {timeout:g} s")
        await asyncio.sleep(0.2)
