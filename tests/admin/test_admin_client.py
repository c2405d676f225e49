"""`turnout status|set|rollback|resume` against an admin API, plus the status table.

The server here is a FAKE of the admin API's mutating contract (SPEC §8), written
when the real endpoints did not exist yet: it implements exactly what the CLI
relies on (bearer token, 401/403/404/400 answers, ``before``/``after``) and no
more. Tests of the real admin API belong with it; these test the client.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.admin.client import AdminClient, AdminError, admin_target
from proxy.admin.render import format_change, format_rollback_all, format_status
from proxy.cli import main

TOKEN = "s3cret"
SEEN = web.AppKey("seen", list[dict[str, Any]])


def fake_admin(token: str | None) -> web.Application:
    """Flags ``user-api`` (file 10 %) and ``checkout`` (file 100 %); ``broken`` answers 500."""
    files = {"user-api": 10.0, "checkout": 100.0}
    overrides: dict[str, dict[str, Any]] = {}
    seen: list[dict[str, Any]] = []

    def percent_of(name: str) -> float:
        return overrides[name]["percent"] if name in overrides else files[name]

    def change(name: str, request: web.Request, percent: float | None, reason: str) -> Any:
        before = percent_of(name)
        if percent is None:
            overrides.pop(name, None)
        else:
            by = request.remote or "?"
            overrides[name] = {"percent": percent, "reason": reason, "by": by, "at": 1.0}
        return {"flag": name, "before": before, "after": percent_of(name)}

    def error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append({"path": request.path, "auth": request.headers.get("Authorization")})
        if request.method != "POST":
            return await handler(request)
        if token is None:
            return error(403, "admin_token_unset", "no admin token is configured")
        if request.headers.get("Authorization") != f"Bearer {token}":
            return error(401, "unauthorized", "missing or wrong bearer token")
        name = request.match_info.get("name")
        if name == "broken":
            return error(500, "internal", "the flag store is on fire")
        if name is not None and name not in files:
            return error(404, "unknown_flag", f"no flag {name!r}")
        return await handler(request)

    async def set_percent(request: web.Request) -> web.Response:
        percent = (await request.json()).get("percent")
        seen[-1]["percent"] = percent
        if not isinstance(percent, int | float) or not 0 <= percent <= 100:
            return error(400, "bad_percent", "percent must be 0..100")
        return web.json_response(change(request.match_info["name"], request, percent, "set"))

    async def rollback(request: web.Request) -> web.Response:
        return web.json_response(change(request.match_info["name"], request, 0.0, "rollback"))

    async def resume(request: web.Request) -> web.Response:
        return web.json_response(change(request.match_info["name"], request, None, ""))

    async def rollback_all(request: web.Request) -> web.Response:
        return web.json_response({"flags": [change(n, request, 0.0, "rollback") for n in files]})

    async def status(_: web.Request) -> web.Response:
        flags = [
            {"name": n, "phase": "canary", "percent": percent_of(n), "file_percent": files[n],
             "override": overrides.get(n), "canary": None, "backends": {}}
            for n in files
        ]  # fmt: skip
        return web.json_response({"config_hash": "abc", "flags": flags, "backends": {}})

    app = web.Application(middlewares=[guard])
    app[SEEN] = seen
    app.router.add_get("/status", status)
    app.router.add_post("/flags/{name}/percent", set_percent)
    app.router.add_post("/flags/{name}/rollback", rollback)
    app.router.add_post("/flags/{name}/resume", resume)
    app.router.add_post("/rollback", rollback_all)
    return app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TURNOUT_ADMIN_URL", raising=False)
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)


@pytest.fixture
async def admin(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(fake_admin(TOKEN))
    return server


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def turnout(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in a thread (it runs its own event loop); (exit code, stdout, stderr)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_set_rollback_resume(admin: TestServer, capsys: Any) -> None:
    url = url_of(admin)
    assert await turnout(capsys, "set", "user-api", "25%", "--admin", url) == (
        0, "user-api: 10% -> 25%\n", ""
    )  # fmt: skip
    assert admin.app[SEEN][-1] == {
        "path": "/flags/user-api/percent", "auth": f"Bearer {TOKEN}", "percent": 25.0
    }  # fmt: skip
    code, out, _ = await turnout(capsys, "status", "--admin", url)
    assert code == 0 and "25% (override: set by 127.0.0.1; file 10%)" in out

    assert (await turnout(capsys, "set", "user-api", "12.5", "--admin", url))[1] == (
        "user-api: 25% -> 12.5%\n"
    )
    assert (await turnout(capsys, "rollback", "user-api", "--admin", url))[:2] == (
        0, "user-api: 12.5% -> 0% (rolled back)\n"
    )  # fmt: skip
    assert (await turnout(capsys, "resume", "user-api", "--admin", url))[:2] == (
        0, "user-api: 0% -> 10% (override cleared)\n"
    )  # fmt: skip


async def test_rollback_all(admin: TestServer, capsys: Any) -> None:
    code, out, _ = await turnout(capsys, "rollback", "--all", "--admin", url_of(admin))
    assert code == 0
    assert out == "user-api: 10% -> 0% (rolled back)\ncheckout: 100% -> 0% (rolled back)\n"
    assert admin.app[SEEN][-1]["path"] == "/rollback"


async def test_admin_url_from_the_environment(
    admin: TestServer, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_ADMIN_URL", f"127.0.0.1:{admin.port}")  # admin.listen's form
    code, out, _ = await turnout(capsys, "status")
    assert code == 0 and "user-api" in out


@pytest.mark.parametrize(
    ("token", "hint"),
    [("wrong", "is TURNOUT_ADMIN_TOKEN the right token?"), (None, "is TURNOUT_ADMIN_TOKEN set?")],
)
async def test_refused_without_the_right_token(
    admin: TestServer, capsys: Any, monkeypatch: pytest.MonkeyPatch, token: str | None, hint: str
) -> None:
    if token is None:
        monkeypatch.delenv("TURNOUT_ADMIN_TOKEN")
    else:
        monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", token)
    code, out, err = await turnout(capsys, "set", "user-api", "50", "--admin", url_of(admin))
    assert (code, out) == (3, "")
    assert f"refused: missing or wrong bearer token ({hint})" in err


async def test_refused_when_the_server_has_no_token(aiohttp_server: Any, capsys: Any) -> None:
    server = await aiohttp_server(fake_admin(None))
    code, _, err = await turnout(capsys, "rollback", "--all", "--admin", url_of(server))
    assert code == 3 and "refused: no admin token is configured" in err


@pytest.mark.parametrize("command", [["set", "nope", "5"], ["rollback", "nope"], ["resume", "no"]])
async def test_unknown_flag(admin: TestServer, capsys: Any, command: list[str]) -> None:
    code, out, err = await turnout(capsys, *command, "--admin", url_of(admin))
    assert (code, out) == (4, "")
    assert f"unknown flag {command[1]}" in err


async def test_other_http_errors_exit_1(admin: TestServer, capsys: Any) -> None:
    code, _, err = await turnout(capsys, "set", "broken", "5", "--admin", url_of(admin))
    assert code == 1
    assert "HTTP 500: the flag store is on fire" in err


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port that is bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", [["status"], ["set", "user-api", "5"], ["rollback", "--all"]])
async def test_unreachable_admin(capsys: Any, dead_port: int, command: list[str]) -> None:
    url = f"http://127.0.0.1:{dead_port}"
    code, out, err = await turnout(capsys, *command, "--admin", url)
    assert (code, out) == (2, "")
    assert f"cannot reach the admin API at {url}: connection refused" in err


async def test_an_admin_that_never_answers_times_out(aiohttp_server: Any) -> None:
    async def hang(_: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/status", hang)
    server = await aiohttp_server(app)
    with pytest.raises(AdminError) as caught:
        await AdminClient(url_of(server), None, timeout=0.3).status()
    assert caught.value.exit_code == 2
    assert "no answer within 0.3 s" in str(caught.value)


@pytest.mark.parametrize("percent", ["150", "-1", "abc", "12.345"])
def test_bad_percent_is_a_usage_error(capsys: Any, percent: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["set", "user-api", percent, "--admin", "http://127.0.0.1:1"])
    assert caught.value.code == 2
    assert "percent" in capsys.readouterr().err


def test_rollback_needs_a_flag_or_all(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["rollback"])
    assert "one of the arguments flag --all is required" in capsys.readouterr().err


def write_config(tmp_path: Path, listen: str, extra: str = "") -> str:
    path = tmp_path / "turnout.yaml"
    path.write_text(
        f"admin: {{listen: '{listen}'{extra}}}\n"
        "backends: {legacy: {url: 'http://127.0.0.1:8000'}, new: {url: 'http://127.0.0.1:3000'}}\n"
    )
    return str(path)


def test_admin_target_precedence(tmp_path: Path) -> None:
    config = write_config(tmp_path, "0.0.0.0:9911", ", token_env: MY_TOKEN")
    env = {"TURNOUT_ADMIN_URL": "http://env:1/"}
    assert admin_target("http://flag:2", config, env) == ("http://flag:2", "MY_TOKEN")
    assert admin_target(None, config, env) == ("http://env:1", "MY_TOKEN")
    assert admin_target(None, config, {}) == ("http://127.0.0.1:9911", "MY_TOKEN")
    assert admin_target(None, None, {}) == ("http://127.0.0.1:9901", "TURNOUT_ADMIN_TOKEN")
    ipv6 = write_config(tmp_path, "[::1]:9912")
    assert admin_target(None, ipv6, {})[0] == "http://[::1]:9912"


async def test_admin_address_from_the_config(
    admin: TestServer, capsys: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path, f"0.0.0.0:{admin.port}")
    code, out, _ = await turnout(capsys, "set", "checkout", "50", "-c", config)
    assert (code, out) == (0, "checkout: 100% -> 50%\n")


def test_an_invalid_config_is_reported(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("admin: {listen: nowhere}\n")
    assert main(["status", "-c", str(path)]) == 1
    assert f"cannot read admin.listen from {path}" in capsys.readouterr().err


def backend(requests: int, errors: int, p99: float | None, rps: float) -> dict[str, Any]:
    rate = errors / requests if requests else 0.0
    return {"requests": requests, "errors": errors, "error_rate": rate, "p99_seconds": p99,
            "rps": rps}  # fmt: skip


STATUS_DOC: dict[str, Any] = {
    "config_hash": "3f2a9c1d0e4b5a6978",
    "flags": [
        {"name": "user-api", "phase": "canary", "percent": 25, "file_percent": 10,
         "override": {"percent": 25, "reason": "set", "by": "127.0.0.1", "at": 1767225600.0},
         "canary": {"state": "progressing", "step": 2},
         "backends": {"legacy": backend(1000, 12, 0.125, 41.5), "new": backend(0, 0, None, 0)}},
        {"name": "billing", "phase": "rolled_back", "percent": 0, "file_percent": 50,
         "override": {"percent": 0, "reason": "canary", "by": "canary", "at": 1.0},
         "canary": {"state": "rolled_back", "step": None},
         "backends": {"legacy": backend(10, 0, 1.5, 2), "new": backend(4, 1, 0.0004, 0.5)}},
        {"name": "public-api", "phase": "new", "percent": 100, "file_percent": 100,
         "override": None, "canary": None, "backends": {},
         "shadow": {"parity": 0.75, "match": 3, "mismatch": 1, "error": 0, "dropped": 0,
                    "routes": {"/api/public/**": [
                        {"path": "body.items[*].price", "count": 1, "noise": False,
                         "example": {"legacy": 20, "new": 22}},
                        {"path": "body.id", "count": 1, "noise": True,
                         "example": {"legacy": "a", "new": "b"}}]}}},
    ],
    "backends": {"legacy": {"up": True}, "new": {"up": False}},
}  # fmt: skip


def test_format_status() -> None:
    lines = format_status(STATUS_DOC).splitlines()

    assert lines[0] == "config 3f2a9c1d0e4b   backends: legacy up, new DOWN"
    header, user_api, billing, public_api = lines[2:6]
    assert header.split("  ")[0] == "FLAG"
    for column in ("PHASE", "PERCENT", "CANARY", "LEGACY REQ/S", "LEGACY P99", "NEW ERR"):
        assert column in header
    assert user_api.split() == [
        "user-api", "canary", "25%", "(override:", "set", "by", "127.0.0.1;", "file", "10%)",
        "progressing", "step", "2", "41.5", "1.20%", "125ms", "0.0", "-", "-", "-",
    ]  # fmt: skip
    assert "0% (override: canary; file 50%)" in billing
    assert billing.split()[-7:] == ["2.0", "0.00%", "1.50s", "0.5", "25.00%", "0.4ms", "-"]
    assert public_api.split() == ["public-api", "new", "100%", "-", *["-"] * 6, "75.0%", "of", "4"]
    assert public_api.index("75.0%") == header.index("SHADOW PARITY")
    assert lines[6:10] == [
        "",
        "public-api /api/public/**: differing fields",
        "  1x body.items[*].price  e.g. 20 vs 22",
        "  1x body.id (noise)  e.g. 'a' vs 'b'",
    ]
    assert lines[10:] == [  # then each canary (tests/canary has one with a verdict)
        "", "canary user-api: progressing step 2", "  no judgement yet",
        "", "canary billing: rolled_back", "  no judgement yet",
    ]  # fmt: skip
    for row in (user_api, billing, public_api):  # the columns line up under the header
        assert row.index(row.split()[1]) == header.index("PHASE")
    assert user_api.index("progressing") == header.index("CANARY")
    assert billing.index("2.0") == header.index("LEGACY REQ/S")


def test_format_status_without_flags_or_numbers() -> None:
    text = format_status({"config_hash": "abc", "flags": [], "backends": {}})
    assert text == "config abc   backends: legacy ?, new ?\n\nno flags configured\n"


def test_format_change_and_rollback_all() -> None:
    assert format_change({"flag": "a", "before": 0.5, "after": 12.25}) == "a: 0.5% -> 12.25%\n"
    assert format_rollback_all({"flags": []}) == "no flags to roll back\n"
    assert format_rollback_all({"flags": ["a"]}) == "a: rolled back\n"


async def test_a_config_invalid_elsewhere_still_gives_the_admin_address(
    admin: TestServer, capsys: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status -c FILE` is what an operator runs when the file was just broken."""
    path = tmp_path / "broken.yaml"
    path.write_text(
        f"admin: {{listen: '127.0.0.1:{admin.port}', token_env: MY_TOKEN}}\n"
        "backends: {legacy: {url: 'ftp://nope'}}\n"
        "flags: {a: {percent: 140}}\n"
        "bogus: 1\n"
    )
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    monkeypatch.delenv("TURNOUT_ADMIN_TOKEN")
    code, out, err = await turnout(capsys, "status", "-c", str(path))
    assert (code, err) == (0, "")
    assert "user-api" in out
    code, out, _ = await turnout(capsys, "set", "checkout", "50", "-c", str(path))
    assert (code, out) == (0, "checkout: 100% -> 50%\n")


def test_a_config_without_admin_listen_or_readable_yaml_gives_the_default(
    tmp_path: Path,
) -> None:
    path = tmp_path / "broken.yaml"
    for text in ("backends: {legacy: 3}\n", "admin: {token_env: MINE}\n", "admin: [\n"):
        path.write_text(text)
        url, token_env = admin_target(None, str(path), {})
        assert url == "http://127.0.0.1:9901"
        assert token_env == ("MINE" if "MINE" in text else "TURNOUT_ADMIN_TOKEN")


def test_an_unreadable_config_is_reported(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "missing.yaml"
    assert main(["status", "-c", str(path)]) == 1
    assert f"cannot read admin.listen from {path}" in capsys.readouterr().err
