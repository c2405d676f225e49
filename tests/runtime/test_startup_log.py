"""What `turnout serve` says at start-up (JSON lines on stdout), read from a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.runtime.test_serve_process import write_config

LINE_SECONDS = 20


class LogReader:
    """A `turnout serve` process whose stdout is read line by line (never left to fill)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def until(self, event: str) -> dict[str, Any]:
        """Read lines until one with ``event``; returns it."""
        assert self.process.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=LINE_SECONDS)
            assert raw, f"stdout ended before {event!r}: {self.lines}"
            line = orjson.loads(raw)
            self.lines.append(line)
            if line.get("event") == event:
                return line

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[asyncio.subprocess.Process] = []

    async def start(config: Path, *args: str) -> LogReader:
        env = {k: v for k, v in os.environ.items() if k != "TURNOUT_ADMIN_TOKEN"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "serve", "-c", str(config), *args,
            stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        started.append(process)
        return LogReader(process)

    yield start
    for process in started:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.communicate(), timeout=LINE_SECONDS)


def config_with(tmp_path: Path, **extra: Any) -> tuple[Path, int]:
    path, port, _ = write_config(tmp_path, "http://127.0.0.1:9")
    data = yaml.safe_load(path.read_text())
    for key, value in extra.items():
        data[key] = value
    path.write_text(yaml.safe_dump(data))
    return path, port


SHADOW_AND_CANARY = {
    "main": {
        "percent": 50,
        "shadow": {"percent": 10},
        "canary": {"steps": [10, 50], "prometheus_url": "http://127.0.0.1:9090"},
    }
}


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_start_up_says_once_that_runtime_changes_are_off_and_no_key_is_inactive(
    tmp_path: Path, serve: Any, workers: str
) -> None:
    config, _ = config_with(tmp_path, flags=SHADOW_AND_CANARY, discrepancy_log="/tmp/d.jsonl")
    log = await serve(config, "--workers", workers)
    started = await log.until("turnout_started")
    missing = log.events("admin_token_missing")
    assert len(missing) == 1
    assert missing[0]["level"] == "warning"
    assert "TURNOUT_ADMIN_TOKEN" in missing[0]["message"]
    assert "runtime changes" in missing[0]["message"]
    # prometheus_url included: every key is active (tests/config/test_inactive_keys.py
    # shows the warning itself)
    assert log.events("config_key_not_active") == []
    assert started["workers"] == int(workers)
    assert started["loop"] == "uvloop"  # the default


async def test_turnout_loop_asyncio_selects_the_standard_loop(
    tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_LOOP", "asyncio")
    config, _ = config_with(tmp_path)
    log = await serve(config)
    assert (await log.until("turnout_started"))["loop"] == "asyncio"


async def test_worker_log_lines_carry_the_worker_id(tmp_path: Path, serve: Any) -> None:
    config, port = config_with(tmp_path, access_log=True)
    log = await serve(config, "--workers", "2")
    await log.until("turnout_started")
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://127.0.0.1:{port}/x") as response:
            assert response.status == 502  # no backend at port 9: still an access line
    access = await log.until("access")
    assert access["worker"] in (0, 1)
    assert "worker" not in log.events("turnout_started")[0]  # the supervisor is no worker
