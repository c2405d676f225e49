"""`turnout status|set|rollback|resume` against the real admin API, plus the status table.

Each CLI test starts a real Turnout in this process (``start_turnout``) with flags
``user-api`` (10 %) and ``checkout`` (100 %), runs the CLI against its admin
listener and checks the server's live state, not only what the CLI printed. No
request is proxied, so the backends are unreachable URLs. The server and the CLI
share this process's environment: the server reads its token from its own
variable (``admin.token_env``: ``SERVER_TOKEN_ENV``), the CLI from
``TURNOUT_ADMIN_TOKEN``, so a test can give the CLI a wrong token or the server none.
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
from structlog.testing import capture_logs

from proxy.admin.client import AdminClient, AdminError, admin_target
from proxy.admin.render import format_change, format_rollback_all, format_status
from proxy.cli import main
from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout

TOKEN = "s3cret"
SERVER_TOKEN_ENV = "TURNOUT_TEST_SERVER_TOKEN"
NOWHERE = "http://127.0.0.1:9"
FLAGS = {"user-api": {"percent": 10}, "checkout": {"percent": 100}}
ROUTES = [
    {"path": "/api/users/**", "flag": "user-api"},
    {"path": "/api/checkout/**", "flag": "checkout"},
]
FILE_STATE = {"user-api": (10, None, None), "checkout": (100, None, None)}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TURNOUT_ADMIN_URL", raising=False)
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv(SERVER_TOKEN_ENV, TOKEN)


async def serve(start_turnout: StartTurnout) -> Turnout:
    admin = {"listen": "127.0.0.1:0", "token_env": SERVER_TOKEN_ENV}
    return await start_turnout(NOWHERE, NOWHERE, admin=admin, flags=FLAGS, routes=ROUTES)


@pytest.fixture
async def admin(start_turnout: StartTurnout) -> Turnout:
    return await serve(start_turnout)


def url_of(server: Turnout | TestServer) -> str:
    if isinstance(server, Turnout):
        return f"http://127.0.0.1:{server.admin_port}"
    return str(server.make_url("")).rstrip("/")


def live(server: Turnout) -> dict[str, tuple[float, str | None, str | None]]:
    """Per flag: the percent the proxy routes by, and its override's reason and author."""
    state: dict[str, tuple[float, str | None, str | None]] = {}
    for name, rule in server.table.flags.items():
        override = server.controller.state.overrides.get(name)
        if override is None:
            state[name] = (rule.percent, None, None)
        else:
            state[name] = (rule.percent, override.reason, override.by)
    return state


async def turnout(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in a thread (it runs its own event loop); (exit code, stdout, stderr).

    The server runs in this process too: its audit log lines are captured apart,
    so stdout holds only what the CLI printed.
    """
    with capture_logs():
        code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_set_rollback_resume(admin: Turnout, capsys: Any) -> None:
    url = url_of(admin)
    assert await turnout(capsys, "set", "user-api", "25%", "--admin", url) == (
        0, "user-api: 10% -> 25%\n", ""
    )  # fmt: skip
    assert live(admin)["user-api"] == (25, "set", "127.0.0.1")
    code, out, _ = await turnout(capsys, "status", "--admin", url)
    assert code == 0 and "25% (override: set by 127.0.0.1; file 10%)" in out

    assert (await turnout(capsys, "set", "user-api", "12.5", "--admin", url))[1] == (
        "user-api: 25% -> 12.5%\n"
    )
    assert live(admin)["user-api"] == (12.5, "set", "127.0.0.1")
    assert (await turnout(capsys, "rollback", "user-api", "--admin", url))[:2] == (
        0, "user-api: 12.5% -> 0% (rolled back)\n"
    )  # fmt: skip
    assert live(admin)["user-api"] == (0, "rollback", "127.0.0.1")
    assert (await turnout(capsys, "resume", "user-api", "--admin", url))[:2] == (
        0, "user-api: 0% -> 10% (override cleared)\n"
    )  # fmt: skip
    assert live(admin) == FILE_STATE


async def test_rollback_all(admin: Turnout, capsys: Any) -> None:
    code, out, _ = await turnout(capsys, "rollback", "--all", "--admin", url_of(admin))
    assert code == 0
    assert out == "user-api: 10% -> 0% (rolled back)\ncheckout: 100% -> 0% (rolled back)\n"
    assert live(admin) == {
        "user-api": (0, "rollback", "127.0.0.1"), "checkout": (0, "rollback", "127.0.0.1")
    }  # fmt: skip


async def test_admin_url_from_the_environment(
    admin: Turnout, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_ADMIN_URL", f"127.0.0.1:{admin.admin_port}")  # admin.listen's form
    code, out, _ = await turnout(capsys, "status")
    assert code == 0 and "user-api" in out and "checkout" in out


@pytest.mark.parametrize(
    ("token", "hint"),
    [("wrong", "is TURNOUT_ADMIN_TOKEN the right token?"), (None, "is TURNOUT_ADMIN_TOKEN set?")],
)
async def test_refused_without_the_right_token(
    admin: Turnout, capsys: Any, monkeypatch: pytest.MonkeyPatch, token: str | None, hint: str
) -> None:
    if token is None:
        monkeypatch.delenv("TURNOUT_ADMIN_TOKEN")
    else:
        monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", token)
    code, out, err = await turnout(capsys, "set", "user-api", "50", "--admin", url_of(admin))
    assert (code, out) == (3, "")
    assert f"refused: missing or wrong bearer token ({hint})" in err
    assert live(admin) == FILE_STATE


async def test_a_token_read_with_its_trailing_newline_works(
    admin: Turnout, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret mounted from a file often ends in a newline; it is not part of the token."""
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", f" {TOKEN}\n")
    code, out, err = await turnout(capsys, "set", "user-api", "25", "--admin", url_of(admin))
    assert (code, out, err) == (0, "user-api: 10% -> 25%\n", "")
    assert live(admin)["user-api"] == (25, "set", "127.0.0.1")


async def test_a_token_that_cannot_be_sent_is_reported_as_such(
    admin: Turnout, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", "s3c\nret")
    code, out, err = await turnout(capsys, "rollback", "--all", "--admin", url_of(admin))
    assert (code, out) == (3, "")
    assert "TURNOUT_ADMIN_TOKEN holds a control character" in err
    assert "cannot reach" not in err
    assert live(admin) == FILE_STATE


async def test_refused_when_the_server_has_no_token(
    start_turnout: StartTurnout, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SERVER_TOKEN_ENV)  # the CLI still has one
    server = await serve(start_turnout)
    code, out, err = await turnout(capsys, "rollback", "--all", "--admin", url_of(server))
    assert (code, out) == (3, "")
    assert "refused: runtime changes are disabled: no admin token is configured" in err
    assert f"set {SERVER_TOKEN_ENV} in the environment of turnout serve" in err
    assert live(server) == FILE_STATE


@pytest.mark.parametrize("command", [["set", "nope", "5"], ["rollback", "nope"], ["resume", "no"]])
async def test_unknown_flag(admin: Turnout, capsys: Any, command: list[str]) -> None:
    code, out, err = await turnout(capsys, *command, "--admin", url_of(admin))
    assert (code, out) == (4, "")
    assert f"unknown flag {command[1]}" in err
    assert live(admin) == FILE_STATE


@pytest.mark.parametrize(
    "command", [["rollback", ".."], ["resume", ".."], ["set", ".", "5"], ["set", "", "5"]]
)
async def test_a_name_that_is_no_path_segment_is_no_flag(
    admin: Turnout, capsys: Any, command: list[str]
) -> None:
    """``/flags/../rollback`` is ``/rollback`` once the URL is resolved: every flag."""
    code, out, err = await turnout(capsys, *command, "--admin", url_of(admin))
    assert (code, out) == (4, "")
    assert f"unknown flag {command[1]!r}: not a flag name" in err
    assert live(admin) == FILE_STATE


async def test_other_http_errors_exit_1(aiohttp_server: Any, capsys: Any) -> None:
    """The real admin API has no 500 to give: a generic failing HTTP server, not a fake of it."""

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500, text="the flag store is on fire")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fail)
    server = await aiohttp_server(app)
    code, out, err = await turnout(capsys, "set", "user-api", "5", "--admin", url_of(server))
    assert (code, out) == (1, "")
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
    """The real admin API always answers: a generic HTTP server that hangs, not a fake of it."""

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


async def test_admin_address_from_the_config(admin: Turnout, capsys: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, f"0.0.0.0:{admin.admin_port}")
    code, out, _ = await turnout(capsys, "set", "checkout", "50", "-c", config)
    assert (code, out) == (0, "checkout: 100% -> 50%\n")
    assert live(admin)["checkout"] == (50, "set", "127.0.0.1")


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
    admin: Turnout, capsys: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status -c FILE` is what an operator runs when the file was just broken."""
    path = tmp_path / "broken.yaml"
    path.write_text(
        f"admin: {{listen: '127.0.0.1:{admin.admin_port}', token_env: MY_TOKEN}}\n"
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
    assert live(admin)["checkout"] == (50, "set", "127.0.0.1")


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
