"""TLS to backends: ``https://`` URLs and ``backends.NAME.tls``, against real TLS servers.

The certificates are real (a ``trustme`` test CA); every backend is an aiohttp
server on 127.0.0.1 serving TLS. The legacy backend stays plain HTTP, and each
request is forced to ``new`` with the force header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer
from structlog.testing import capture_logs

from proxy.config.models import BackendConfig
from proxy.http.pool import PoolRegistry
from proxy.runtime.app import Turnout
from tests.conftest import StartTurnout, wait_until
from tests.support.backends import recording_app
from tests.support.certs import CertFiles, TestPki

FORCE_NEW = {"x-turnout-backend": "new"}


@dataclass
class TlsBackend:
    """An aiohttp backend serving TLS; counts requests and the connections they came on."""

    url: str
    paths: list[str] = field(default_factory=list)
    peers: set[object] = field(default_factory=set)


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path)


@pytest.fixture
def server_cert(pki: TestPki) -> CertFiles:
    return pki.issue("server", "127.0.0.1", "localhost", "backend.internal")


async def serve_tls(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    cert: CertFiles,
    *,
    require_client_cert: bool = False,
) -> TlsBackend:
    backend = TlsBackend("")

    async def handle(request: web.Request) -> web.Response:
        backend.paths.append(request.path)
        backend.peers.add(request.transport.get_extra_info("peername") if request.transport else 0)
        return web.json_response({"backend": "new", "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    context = pki.server_context(cert, require_client_cert=require_client_cert)
    server = await aiohttp_server(app, ssl=context)
    backend.url = f"https://127.0.0.1:{server.port}"
    return backend


@pytest.fixture
async def legacy_url(aiohttp_server: AiohttpServer) -> str:
    server = await aiohttp_server(recording_app("legacy"))
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def start_with_new(
    start_turnout: StartTurnout, legacy_url: str, new_url: str, **new_extra: Any
) -> Turnout:
    new = {"url": new_url, "timeouts": {"connect": "2s", "response": "5s"}, **new_extra}
    return await start_turnout(legacy_url, new_url, backends={"new": new})


async def get(
    session: aiohttp.ClientSession, turnout: Turnout, path: str = "/api/x"
) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{turnout.proxy_port}{path}"
    async with session.get(url, headers=FORCE_NEW) as response:
        return response.status, await response.json()


def new_pool_opened(turnout: Turnout) -> int:
    return turnout.controller.table.backends[1].pool.opened


async def test_get_through_an_https_backend_trusted_with_ca_file(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    server_cert: CertFiles,
    legacy_url: str,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend = await serve_tls(aiohttp_server, pki, server_cert)
    turnout = await start_with_new(
        start_turnout, legacy_url, backend.url, tls={"ca_file": pki.ca_file}
    )
    status, body = await get(session, turnout, "/api/users/7")
    assert (status, body) == (200, {"backend": "new", "path": "/api/users/7"})
    assert backend.paths == ["/api/users/7"]


async def test_keep_alive_reuses_one_tls_connection(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    server_cert: CertFiles,
    legacy_url: str,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend = await serve_tls(aiohttp_server, pki, server_cert)
    turnout = await start_with_new(
        start_turnout, legacy_url, backend.url, tls={"ca_file": pki.ca_file}
    )
    for i in range(4):
        status, _ = await get(session, turnout, f"/api/{i}")
        assert status == 200
    assert len(backend.paths) == 4
    assert len(backend.peers) == 1  # one client port: one TLS connection for all four
    assert new_pool_opened(turnout) == 1


async def test_an_untrusted_certificate_is_a_502_backend_unreachable_with_a_log_line(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    server_cert: CertFiles,
    legacy_url: str,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend = await serve_tls(aiohttp_server, pki, server_cert)
    turnout = await start_with_new(start_turnout, legacy_url, backend.url)  # system CAs only
    with capture_logs() as logs:
        status, body = await get(session, turnout)
    assert status == 502
    assert body["error"]["code"] == "backend_unreachable"
    assert "certificate did not verify" in body["error"]["message"]
    assert backend.paths == []
    failed = [entry for entry in logs if entry["event"] == "backend_tls_failed"]
    assert len(failed) == 1
    assert "certificate did not verify" in failed[0]["error"]
    assert "unable to get local issuer certificate" in failed[0]["error"]  # why (OpenSSL)


async def test_verify_false_accepts_an_untrusted_certificate_and_warns_at_start(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    server_cert: CertFiles,
    legacy_url: str,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend = await serve_tls(aiohttp_server, pki, server_cert)
    with capture_logs() as logs:
        turnout = await start_with_new(
            start_turnout, legacy_url, backend.url, tls={"verify": False}
        )
    warnings = [entry for entry in logs if entry["event"] == "backend_tls_unverified"]
    assert [(w["backend"], w["log_level"]) for w in warnings] == [("new", "warning")]
    status, body = await get(session, turnout)
    assert (status, body["backend"]) == (200, "new")


async def test_server_name_is_the_name_verified(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    legacy_url: str,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    cert = pki.issue("named", "backend.internal")  # not valid for 127.0.0.1
    backend = await serve_tls(aiohttp_server, pki, cert)
    wrong = await start_with_new(
        start_turnout, legacy_url, backend.url, tls={"ca_file": pki.ca_file}
    )
    status, body = await get(session, wrong)
    assert (status, body["error"]["code"]) == (502, "backend_unreachable")
    assert "127.0.0.1" in body["error"]["message"]  # the hostname mismatch, named
    right = await start_with_new(
        start_turnout,
        legacy_url,
        backend.url,
        tls={"ca_file": pki.ca_file, "server_name": "backend.internal"},
    )
    status, body = await get(session, right)
    assert (status, body["backend"]) == (200, "new")
    mismatch = await start_with_new(
        start_turnout,
        legacy_url,
        backend.url,
        tls={"ca_file": pki.ca_file, "server_name": "other.internal"},
    )
    status, body = await get(session, mismatch)
    assert (status, body["error"]["code"]) == (502, "backend_unreachable")
    assert "other.internal" in body["error"]["message"]
    assert backend.paths == ["/api/x"]


async def test_mutual_tls_client_certificate(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    server_cert: CertFiles,
    legacy_url: str,
    start_turnout: StartTurnout,
    session: aiohttp.ClientSession,
) -> None:
    backend = await serve_tls(aiohttp_server, pki, server_cert, require_client_cert=True)
    client = pki.issue("client", "turnout@example.org")
    anonymous = await start_with_new(
        start_turnout, legacy_url, backend.url, tls={"ca_file": pki.ca_file}
    )
    status, body = await get(session, anonymous)
    # TLS 1.3 refuses a missing client certificate after the handshake: the backend
    # closes the connection before answering (a reset), rather than failing the connect.
    assert status == 502
    assert body["error"]["code"] in ("backend_unreachable", "backend_error")
    assert backend.paths == []
    identified = await start_with_new(
        start_turnout,
        legacy_url,
        backend.url,
        tls={"ca_file": pki.ca_file, "cert_file": client.cert, "key_file": client.key},
    )
    status, body = await get(session, identified)
    assert (status, body["backend"]) == (200, "new")
    assert backend.paths == ["/api/x"]


async def test_health_checks_speak_tls_to_https_backends(
    aiohttp_server: AiohttpServer,
    pki: TestPki,
    server_cert: CertFiles,
    legacy_url: str,
    start_turnout: StartTurnout,
) -> None:
    backend = await serve_tls(aiohttp_server, pki, server_cert)
    health = {"path": "/health", "interval": "50ms", "timeout": "1s", "unhealthy_threshold": 1}
    turnout = await start_with_new(
        start_turnout, legacy_url, backend.url, tls={"ca_file": pki.ca_file}, health=health
    )
    await wait_until(lambda: backend.paths.count("/health") >= 3)
    assert turnout.health.up()["new"]


def test_pools_are_kept_per_tls_settings(pki: TestPki) -> None:
    """A reload that changes TLS settings must open new connections, not reuse old ones."""
    registry = PoolRegistry()
    url = "https://127.0.0.1:8443"
    plain = registry.target("new", BackendConfig(url=url))
    assert registry.target("new", BackendConfig(url=url)).pool is plain.pool
    with_ca = registry.target("new", BackendConfig(url=url, tls={"ca_file": pki.ca_file}))
    assert with_ca.pool is not plain.pool
    named = BackendConfig(url=url, tls={"ca_file": pki.ca_file, "server_name": "x.internal"})
    assert registry.target("new", named).pool not in (plain.pool, with_ca.pool)
    unverified = BackendConfig(url=url, tls={"verify": False})
    assert registry.target("new", unverified).pool not in (plain.pool, with_ca.pool)


def test_a_certificate_renewed_in_place_gets_a_new_pool(pki: TestPki, tmp_path: Path) -> None:
    registry = PoolRegistry()
    backend = BackendConfig(url="https://127.0.0.1:8443", tls={"ca_file": pki.ca_file})
    before = registry.target("new", backend).pool
    assert registry.target("new", backend).pool is before
    (tmp_path / "renewed").mkdir()
    TestPki(tmp_path / "renewed").ca.cert_pem.write_to_path(pki.ca_file)  # same path, new CA
    assert registry.target("new", backend).pool is not before
