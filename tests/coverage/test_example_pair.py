"""`turnout coverage` on the example pair's live documents: FastAPI's `/openapi.json`
(OpenAPI 3.1) and NestJS's `/api-json` (3.0), served by the real services.

Skipped without node, the NestJS build or fastapi/uvicorn (failed in CI), as
every example test. The pair keeps FastAPI's parameter names; renamed ones are
covered by the fixture documents (test_matching.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from proxy.config.loader import LoadedConfig
from proxy.config.models import CoverageConfig
from proxy.coverage.draft import route_pattern
from proxy.coverage.matching import coverage_map
from proxy.coverage.source import load_document
from proxy.runtime.app import Turnout
from tests.coverage.test_cli import run_cli
from tests.examples.fixtures import EXAMPLE_CONFIG, _Yaml12Loader, example_config
from tests.examples.pair import LEGACY_OPERATIONS, MISSING_ON_NEW


def documents(legacy: str, new: str) -> tuple[str, str]:
    return f"{legacy}/openapi.json", f"{new}/api-json"


async def test_the_map_lists_exactly_the_operations_nestjs_lacks(
    legacy_fastapi: str, new_nestjs: str
) -> None:
    sources = documents(legacy_fastapi, new_nestjs)
    legacy, new = await asyncio.gather(*(asyncio.to_thread(load_document, s) for s in sources))
    assert (legacy.version[:3], new.version[:3]) == ("3.1", "3.0")
    mapped = coverage_map(legacy, new, example_config(legacy_fastapi, new_nestjs).config)
    assert len(mapped.rows) == LEGACY_OPERATIONS
    missing = {(r.operation.method, r.operation.path) for r in mapped.rows if not r.counterpart}
    assert missing == MISSING_ON_NEW
    assert all(row.flag is not None for row in mapped.rows)  # the example routes cover all


async def test_written_routes_pin_what_nestjs_lacks_and_pass_check(
    legacy_fastapi: str, new_nestjs: str, tmp_path: Path
) -> None:
    legacy, new = documents(legacy_fastapi, new_nestjs)
    args = ["-c", str(EXAMPLE_CONFIG), "--legacy-openapi", legacy, "--new-openapi", new]
    code, out, err = await run_cli("coverage", *args, "--write-routes")
    assert (code, err) == (0, "")
    draft = yaml.safe_load(out)
    pinned = {
        (method, route["path"])
        for route in draft["routes"]
        if route["flag"] == "pinned-legacy"
        for method in route["methods"]
    }
    assert pinned == {(method, route_pattern(path)) for method, path in MISSING_ON_NEW}
    # `on:` (fallback) must stay a string: YAML 1.2 booleans, as Turnout reads the file
    config = yaml.load(EXAMPLE_CONFIG.read_text(), Loader=_Yaml12Loader)
    config["flags"].update(draft["flags"])
    config["routes"] = draft["routes"] + config["routes"]
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump(config, sort_keys=False))
    code, _, err = await run_cli("check", "-c", str(merged))
    assert (code, err) == (0, "")


async def test_status_shows_each_flags_coverage_in_front_of_the_pair(
    legacy_fastapi: str, new_nestjs: str
) -> None:
    legacy, new = documents(legacy_fastapi, new_nestjs)
    loaded = example_config(legacy_fastapi, new_nestjs)
    config = loaded.config.model_copy(
        update={"coverage": CoverageConfig(legacy_openapi=legacy, new_openapi=new)}
    )
    turnout = Turnout(LoadedConfig(config, loaded.hash, loaded.path))
    await turnout.start()
    try:
        url = f"http://127.0.0.1:{turnout.admin_port}/status"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            status: dict[str, Any] = await response.json()
    finally:
        await turnout.stop()
    flags = {flag["name"]: flag["coverage"] for flag in status["flags"]}
    # account-api: 7 operations, 2 not ported (invoices, POST addresses), at 10 %
    assert flags["account-api"]["legacy_operations"] == 7
    assert flags["account-api"]["in_new"] == 5
    assert status["coverage"]["missing_in_new"] == len(MISSING_ON_NEW)
    assert status["coverage"]["legacy"]["operations"] == LEGACY_OPERATIONS
