"""Fixtures for the example migration pair (examples/), for any test under tests/.

A pytest plugin registered by tests/conftest.py (``pytest_plugins``), so the
session-scoped services start once per session whichever folder uses them,
and only when a test asks for them.

- ``legacy_fastapi`` / ``new_nestjs``: base URLs (``http://127.0.0.1:PORT``) of the two
  real services, started once per test session with their test hooks on
  (``EXAMPLE_TEST_HOOKS=1``: ``GET /_test/received?test_id=...`` lists the requests
  that carried that ``x-test-id`` header) and seeded ids (``EXAMPLE_SEED``).
- ``nestjs_process``: the NestJS ``ServiceProcess``, to ``kill()`` and ``start()`` it;
  ``restartable_nestjs`` gives the same and restarts it after the test, whatever happened.
- ``start_example_turnout(**flag_changes)``: a running Turnout built from
  config/examples/fastapi-to-nestjs.yaml, pointed at the two services.

Without node, the npm packages, the NestJS build or fastapi/uvicorn the tests are
skipped with the command to run, except in CI (``CI`` set), where they fail.
Service logs are in the session's tmp directory (printed on a failed start).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.loader import LoadedConfig, config_hash, parse_config
from proxy.runtime.app import Turnout
from tests.examples.services import (
    ROOT,
    ServiceProcess,
    legacy_fastapi_process,
    new_nestjs_process,
)

EXAMPLE_CONFIG = ROOT / "config" / "examples" / "fastapi-to-nestjs.yaml"


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("example-services")


@pytest.fixture(scope="session")
def legacy_process(service_logs: Path) -> Iterator[ServiceProcess]:
    service = legacy_fastapi_process(service_logs)
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def nestjs_process(service_logs: Path) -> Iterator[ServiceProcess]:
    service = new_nestjs_process(service_logs)
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def legacy_fastapi(legacy_process: ServiceProcess) -> str:
    return legacy_process.url


@pytest.fixture(scope="session")
def new_nestjs(nestjs_process: ServiceProcess) -> str:
    return nestjs_process.url


@pytest.fixture
def restartable_nestjs(nestjs_process: ServiceProcess) -> Iterator[ServiceProcess]:
    """The NestJS process for a test that kills it; running again after the test."""
    yield nestjs_process
    nestjs_process.start()


class _Yaml12Loader(yaml.SafeLoader):
    """Safe loading where `on:` stays the string "on", as Turnout's loader reads it."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def example_config(legacy_url: str, new_url: str, **flag_changes: dict[str, Any]) -> LoadedConfig:
    """The shipped example config on ephemeral ports, pointed at the two services.

    Backends lose their active health checks so that a test that kills a
    service sees fallbacks, not a health checker racing it; ``flag_changes``
    are merged into the named flags (a value of ``None`` removes the key).
    """
    data = yaml.load(EXAMPLE_CONFIG.read_text(encoding="utf-8"), Loader=_Yaml12Loader)
    data["listen"] = "127.0.0.1:0"
    data["admin"] = {"listen": "127.0.0.1:0"}
    for key in ("state_file", "discrepancy_log"):
        data.pop(key, None)
    for name, url in (("legacy", legacy_url), ("new", new_url)):
        data["backends"][name] = {"url": url, "timeouts": {"connect": "1s", "response": "10s"}}
    for flag, changes in flag_changes.items():
        merged = {**data["flags"][flag], **changes}
        data["flags"][flag] = {k: v for k, v in merged.items() if v is not None}
    text = yaml.safe_dump(data, sort_keys=False)
    return LoadedConfig(parse_config(text, str(EXAMPLE_CONFIG)), config_hash(text), "example")


StartExampleTurnout = Callable[..., Awaitable[Turnout]]


@pytest.fixture
async def start_example_turnout(
    legacy_fastapi: str, new_nestjs: str
) -> AsyncIterator[StartExampleTurnout]:
    """``await start_example_turnout(**flag_changes)`` -> a running Turnout in front of the pair.

    Reach it at ``http://127.0.0.1:{t.proxy_port}``; it is stopped after the test.
    """
    started: list[Turnout] = []

    async def start(**flag_changes: dict[str, Any]) -> Turnout:
        turnout = Turnout(example_config(legacy_fastapi, new_nestjs, **flag_changes))
        await turnout.start()
        started.append(turnout)
        return turnout

    yield start
    for turnout in started:
        await turnout.stop()
