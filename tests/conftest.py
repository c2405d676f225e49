"""Shared fixtures: real Turnout instances on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml

from proxy.config.loader import config_hash, parse_config
from proxy.runtime.app import LoadedConfig, Turnout

# The example FastAPI/NestJS pair (legacy_fastapi, new_nestjs, ...): started only when asked for.
pytest_plugins = ["tests.examples.fixtures"]

BASE_CONFIG: dict[str, Any] = {
    "listen": "127.0.0.1:0",
    "admin": {"listen": "127.0.0.1:0"},
    "sticky": [{"header": "x-user-id"}, "client_ip"],
    "force_header": "x-turnout-backend",
    "flags": {"main": {"percent": 0}},
    "routes": [{"path": "/**", "flag": "main"}],
}


def make_config(legacy_url: str, new_url: str, **overrides: Any) -> LoadedConfig:
    """A validated config (through the real YAML loader) for two backend URLs."""
    data = {**BASE_CONFIG, **overrides}
    data.setdefault("backends", {})
    data["backends"] = {
        "legacy": {"url": legacy_url, "timeouts": {"connect": "1s", "response": "5s"}},
        "new": {"url": new_url, "timeouts": {"connect": "1s", "response": "5s"}},
        **overrides.get("backends", {}),
    }
    text = yaml.safe_dump(data, sort_keys=False)
    return LoadedConfig(parse_config(text, "test.yaml"), config_hash(text), "test.yaml")


StartTurnout = Callable[..., Awaitable[Turnout]]


@pytest.fixture
async def start_turnout() -> AsyncIterator[StartTurnout]:
    """``await start_turnout(legacy_url, new_url, **config_overrides)`` -> a running Turnout.

    Reach it at ``http://127.0.0.1:{t.proxy_port}`` (admin: ``t.admin_port``);
    everything started is stopped at the end of the test.
    """
    started: list[Turnout] = []

    async def start(legacy_url: str, new_url: str, **overrides: Any) -> Turnout:
        turnout = Turnout(make_config(legacy_url, new_url, **overrides))
        await turnout.start()
        started.append(turnout)
        return turnout

    yield start
    for turnout in started:
        await turnout.stop()


async def wait_until(
    condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
