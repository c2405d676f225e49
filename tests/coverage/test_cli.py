"""`turnout coverage` as an operator runs it: `python -m proxy coverage ...` in a subprocess.

The documents come from the fixture files, from a real HTTP server on
127.0.0.1, and the live percents from a real in-process Turnout's admin API.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.conftest import StartTurnout
from tests.coverage.conftest import CONFIG, LEGACY, NEW

ROOT = Path(__file__).resolve().parents[2]
RUN_DEADLINE = 60.0


async def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the test's loop (it may talk to servers in it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), RUN_DEADLINE)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def fixture_args(legacy: str = str(LEGACY), new: str = str(NEW)) -> list[str]:
    return ["coverage", "-c", str(CONFIG), "--legacy-openapi", legacy, "--new-openapi", new]


async def test_the_table_lists_the_operations_and_the_totals() -> None:
    code, out, err = await run_cli(*fixture_args())
    assert (code, err) == (0, "")
    assert "Legacy operations:" in out and "Only in new:" in out and "Per flag:" in out
    missing = [line.split()[:2] for line in out.splitlines() if "MISSING" in line]
    assert missing == [["DELETE", "/api/users/{user_id}"], ["GET", "/api/legacy-only/export"]]
    assert "Legacy operations served by new at 100%: 1 of 9 (11.11%)" in out


async def test_json_lists_exactly_what_new_lacks_and_what_only_new_has() -> None:
    code, out, _ = await run_cli(*fixture_args(), "--format", "json")
    assert code == 0
    report = json.loads(out)
    lacking = [(op["method"], op["path"]) for op in report["operations"] if not op["in_new"]]
    assert lacking == [("DELETE", "/api/users/{user_id}"), ("GET", "/api/legacy-only/export")]
    assert [(op["method"], op["path"]) for op in report["only_in_new"]] == [
        ("PATCH", "/api/users/{id}"),
        ("GET", "/api/v2/search"),
    ]
    assert report["legacy"]["openapi"] == "3.0.3" and report["new"]["openapi"] == "3.1.0"


async def test_markdown() -> None:
    code, out, _ = await run_cli(*fixture_args(), "--format", "markdown")
    assert code == 0
    assert out.startswith("# API coverage\n")
    assert "| DELETE | `/api/users/{user_id}` | MISSING | unmatched | none | 0% | legacy |" in out


async def test_written_routes_parse_as_yaml_and_pass_turnout_check_when_merged(
    tmp_path: Path,
) -> None:
    code, out, _ = await run_cli(*fixture_args(), "--write-routes")
    assert code == 0
    draft = yaml.safe_load(out)
    assert set(draft) == {"flags", "routes"} and len(draft["routes"]) == 6
    config = yaml.safe_load(CONFIG.read_text())
    config["flags"].update(draft["flags"])
    config["routes"] = draft["routes"] + config["routes"]
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump(config, sort_keys=False))
    code, out, err = await run_cli("check", "-c", str(merged))
    assert (code, err) == (0, ""), err
    assert "6 flags, 9 routes" in out


async def test_the_documents_default_to_the_config_coverage_block(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["coverage"] = {"legacy_openapi": str(LEGACY), "new_openapi": str(NEW)}
    path = tmp_path / "turnout.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, _ = await run_cli("coverage", "-c", str(path), "--format", "json")
    assert code == 0 and len(json.loads(out)["operations"]) == 9


async def test_odd_or_unreadable_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    # every kind of odd document is in test_source.py; here: what the CLI makes of one
    odd = tmp_path / "swagger.yaml"
    odd.write_text("swagger: '2.0'\ninfo: {}\npaths: {}\n")
    code, out, err = await run_cli(*fixture_args(legacy=str(odd)))
    assert (code, out) == (1, "")
    assert err == (
        f"error: {odd}: not an OpenAPI 3.x document: Swagger 2.0 (convert it to OpenAPI 3)\n"
    )
    missing = tmp_path / "missing.json"
    code, out, err = await run_cli(*fixture_args(new=str(missing)))
    assert (code, out) == (1, "")
    assert err == f"error: {missing}: cannot read: No such file or directory\n"


async def test_a_bad_config_is_reported_like_turnout_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: {}\ncoverage: {legacy_openapi: ''}\n")
    code, _, err = await run_cli("coverage", "-c", str(bad))
    assert code == 1
    assert "coverage.legacy_openapi" in err and "coverage.new_openapi" in err


async def test_documents_from_urls(
    aiohttp_server: Any,
) -> None:
    async def legacy(_: web.Request) -> web.FileResponse:
        return web.FileResponse(LEGACY)

    async def new(_: web.Request) -> web.FileResponse:
        return web.FileResponse(NEW)

    app = web.Application()
    app.router.add_get("/openapi.json", legacy)
    app.router.add_get("/api-yaml", new)
    server = await aiohttp_server(app)
    base = f"http://127.0.0.1:{server.port}"
    code, out, _ = await run_cli(
        *fixture_args(f"{base}/openapi.json", f"{base}/api-yaml"), "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["legacy"]["source"] == f"{base}/openapi.json"


async def answering_backend(aiohttp_server: Any) -> str:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


async def test_admin_gives_live_percents_and_the_share_of_live_requests(
    start_turnout: StartTurnout, aiohttp_server: Any
) -> None:
    legacy, new = await answering_backend(aiohttp_server), await answering_backend(aiohttp_server)
    config = yaml.safe_load(CONFIG.read_text())
    turnout = await start_turnout(legacy, new, flags=config["flags"], routes=config["routes"])
    await turnout.controller.set_percent("user-api", 100, "test")
    proxy = f"http://127.0.0.1:{turnout.proxy_port}"
    async with aiohttp.ClientSession() as session:
        for path in ("/api/users", "/api/users", "/api/reports/7", "/api/public/status"):
            async with session.get(proxy + path) as response:
                assert response.status == 200
    admin = f"http://127.0.0.1:{turnout.admin_port}"
    code, out, err = await run_cli(*fixture_args(), "--format", "json", "--admin", admin)
    assert (code, err) == (0, "")
    report = json.loads(out)
    flags = {f["flag"]: f for f in report["flags"]}
    assert (flags["user-api"]["percent"], flags["user-api"]["phase"]) == (100.0, "new")
    # user-api's 3 operations and public-api's 1 are served by new now
    assert report["served_by_new_at_100"]["operations"] == 4
    # 2 users + 1 public went to new, the unmatched report to legacy
    assert report["live_requests"] == {"new": 3, "total": 4, "share": 0.75}
    code, out, _ = await run_cli(*fixture_args(), "--admin", admin)
    assert "Live requests answered by new: 3 of 4 (75%)" in out


async def test_an_unreachable_admin_api_is_one_line() -> None:
    code, _, err = await run_cli(*fixture_args(), "--admin", "http://127.0.0.1:1")
    assert code == 2
    assert err.startswith("error: cannot reach the admin API at http://127.0.0.1:1")
    assert err.count("\n") == 1
