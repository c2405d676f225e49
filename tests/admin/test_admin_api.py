"""The real admin API of a running Turnout, driven over HTTP and through the CLI."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from proxy.admin.client import AdminClient, AdminError
from proxy.cli import main
from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout

TOKEN = "s3cret-token"
NOWHERE = "http://127.0.0.1:9"


async def post(turnout: Turnout, path: str, json: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{turnout.admin_port}{path}", headers=headers, json=json
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


async def status_flags(turnout: Turnout) -> dict[str, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{turnout.admin_port}/status") as response,
    ):
        return {flag["name"]: flag for flag in (await response.json())["flags"]}


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in a thread (it runs its own event loop): (exit code, stdout, stderr)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("TURNOUT_ADMIN_URL", raising=False)


@pytest.mark.usefixtures("token")
@pytest.mark.parametrize("rollback", ["/flags/main/rollback", "/rollback"])
async def test_set_after_a_rollback_is_refused_until_resume(
    start_turnout: StartTurnout, rollback: str
) -> None:
    turnout = await start_turnout(NOWHERE, NOWHERE, flags={"main": {"percent": 40}})
    assert (await post(turnout, rollback))[0] == 200
    status, body = await post(turnout, "/flags/main/percent", {"percent": 50})
    assert status == 409
    assert body["error"]["code"] == "rolled_back"
    message = body["error"]["message"]
    assert "main was rolled back by 127.0.0.1 at " in message
    assert "`turnout resume main` first" in message
    assert turnout.table.flags["main"].percent == 0
    assert (await post(turnout, "/flags/main/resume"))[0] == 200
    status, body = await post(turnout, "/flags/main/percent", {"percent": 50})
    assert (status, body["after"]) == (200, 50)


@pytest.mark.usefixtures("token")
async def test_resume_without_an_override_is_a_no_op_that_says_so(
    start_turnout: StartTurnout,
) -> None:
    turnout = await start_turnout(NOWHERE, NOWHERE, flags={"main": {"percent": 40}})
    status, body = await post(turnout, "/flags/main/resume")
    assert status == 200
    assert body["changed"] is False
    assert (body["before"], body["after"]) == (40, 40)
    assert body["message"] == "main has no runtime override: nothing to resume"
    status, body = await post(turnout, "/flags/main/percent", {"percent": 50})
    assert body["changed"] is True


@pytest.mark.usefixtures("token")
async def test_the_cli_says_why_set_is_refused_and_that_resume_did_nothing(
    start_turnout: StartTurnout, capsys: pytest.CaptureFixture[str]
) -> None:
    turnout = await start_turnout(NOWHERE, NOWHERE, flags={"main": {"percent": 40}})
    admin = f"http://127.0.0.1:{turnout.admin_port}"
    code, out, err = await cli(capsys, "resume", "main", "--admin", admin)
    assert (code, out, err) == (0, "main: no runtime override, nothing to resume (40%)\n", "")
    assert (await cli(capsys, "rollback", "main", "--admin", admin))[0] == 0
    code, out, err = await cli(capsys, "set", "main", "50", "--admin", admin)
    assert (code, out) == (1, "")
    assert err.startswith("turnout set: refused: main was rolled back by 127.0.0.1 at ")
    assert err.endswith("; `turnout resume main` first\n")
    code, out, _ = await cli(capsys, "resume", "main", "--admin", admin)
    assert code == 0  # stdout also holds the server's audit line: it runs in this process
    assert "main: 0% -> 40% (override cleared)" in out.splitlines()


async def test_no_token_configured_is_not_blamed_on_the_callers_token(
    start_turnout: StartTurnout,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TURNOUT_ADMIN_TOKEN", raising=False)
    turnout = await start_turnout(NOWHERE, NOWHERE)
    admin = f"http://127.0.0.1:{turnout.admin_port}"
    code, _, err = await cli(capsys, "rollback", "main", "--admin", admin)
    assert code == 3
    assert err == (
        "turnout rollback: refused: runtime changes are disabled: no admin token is "
        "configured (set TURNOUT_ADMIN_TOKEN in the environment of turnout serve)\n"
    )
    with pytest.raises(AdminError) as caught:  # a caller that has a token of its own
        await AdminClient(admin, "some-token").rollback("main")
    assert caught.value.exit_code == 3
    assert "right token" not in str(caught.value) and "(is " not in str(caught.value)


async def test_status_phases_follow_what_is_active(start_turnout: StartTurnout) -> None:
    flags = {
        "off": {"percent": 0},
        "shadowed": {"percent": 0, "shadow": {"percent": 10}},
        "split": {"percent": 30},
        "done": {"percent": 100},
    }
    routes = [{"path": "/**", "flag": "off"}]
    turnout = await start_turnout(NOWHERE, NOWHERE, flags=flags, routes=routes)
    phases = {name: flag["phase"] for name, flag in (await status_flags(turnout)).items()}
    assert phases == {"off": "legacy", "shadowed": "shadow", "split": "canary", "done": "new"}


async def test_a_server_token_read_with_its_trailing_newline_still_matches(
    start_turnout: StartTurnout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token mounted from a file (a Kubernetes Secret) usually ends with a newline:
    callers send it without, and the client strips its own copy too."""
    monkeypatch.setenv("TURNOUT_ADMIN_TOKEN", f"{TOKEN}\n")
    turnout = await start_turnout(NOWHERE, NOWHERE, flags={"main": {"percent": 40}})
    status, body = await post(turnout, "/flags/main/percent", {"percent": 50})
    assert status == 200, body
    assert (await status_flags(turnout))["main"]["percent"] == 50
