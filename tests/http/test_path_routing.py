"""The path is normalised before matching and the backend receives the normalised
path (SPEC §4.1): the route that decided is the route that serves."""

from __future__ import annotations

import pytest
from pytest_aiohttp.plugin import AiohttpServer

from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout
from tests.http.test_raw_socket import error_code, exchange
from tests.support.backends import Recorder, recording_app

ROUTED = {
    "flags": {"public": {"percent": 0}, "admin": {"percent": 100}},
    "routes": [
        {"path": "/admin/**", "flag": "admin"},
        {"path": "/public/**", "flag": "public"},
    ],
}


async def start_routed(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> tuple[Turnout, Recorder, Recorder]:
    legacy, new = Recorder(), Recorder()
    legacy_server = await aiohttp_server(recording_app("legacy", legacy))
    new_server = await aiohttp_server(recording_app("new", new))
    turnout = await start_turnout(
        str(legacy_server.make_url("")), str(new_server.make_url("")), **ROUTED
    )
    return turnout, legacy, new


@pytest.mark.parametrize(
    "target",
    [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/.%2E/admin/x",
        "/public/./../admin/./x",
        "//public//..//admin/x",
        "/%61dmin/x",
    ],
)
async def test_a_dotted_path_is_routed_and_forwarded_normalised(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, target: str
) -> None:
    turnout, legacy, new = await start_routed(aiohttp_server, start_turnout)
    response = await exchange(
        turnout.proxy_port, f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
    )
    assert response.status == 200
    assert response.header("x-turnout-backend") == "new"  # the /admin/** route decided
    assert [s.path_qs for s in new.seen] == ["/admin/x"]
    assert legacy.seen == []


async def test_the_query_reaches_the_backend_untouched(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout
) -> None:
    turnout, legacy, _ = await start_routed(aiohttp_server, start_turnout)
    response = await exchange(
        turnout.proxy_port, b"GET /public/./a?next=/../admin&x=%2e HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert response.status == 200
    assert [s.path_qs for s in legacy.seen] == ["/public/a?next=/../admin&x=%2e"]


@pytest.mark.parametrize(
    "target",
    ["/../x", "/public/../../x", "/%2e%2e/admin/x", "/a%zz", "/a%00", "*", "http://t/admin/x"],
)
async def test_an_unsafe_target_is_a_400(
    aiohttp_server: AiohttpServer, start_turnout: StartTurnout, target: str
) -> None:
    turnout, legacy, new = await start_routed(aiohttp_server, start_turnout)
    response = await exchange(
        turnout.proxy_port, f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
    )
    assert response.status == 400
    assert error_code(response) == "bad_request"
    assert legacy.seen == [] and new.seen == []
