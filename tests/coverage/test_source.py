"""Reading documents: odd or unreadable input is a one-line `SourceError`, never a crash
or a hang. Files from tmp_path, URLs from real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.coverage.source import SourceError, document_from_data, load_document
from tests.coverage.conftest import CONFIG, LEGACY

DEEP = b"[" * 100_000 + b"]" * 100_000

ODD: dict[str, tuple[bytes, str]] = {
    "list.json": (b"[1, 2]", "not an OpenAPI 3.x document: the top level is list"),
    "swagger.yaml": (b"swagger: '2.0'\ninfo: {}\npaths: {}\n", "Swagger 2.0"),
    "config.yaml": (CONFIG.read_bytes(), "not an OpenAPI 3.x document: no 'openapi' field"),
    "version.yaml": (b"openapi: 3.0\n", "openapi: 3.0"),
    "unknown-version.yaml": (
        b"openapi: 3.9.9\ninfo: {title: t, version: '1'}\npaths: {}\n",
        "OpenAPI 3.9.9 is not a version the validator knows",
    ),
    "broken.yaml": (b"openapi: [3.0\n", "neither JSON nor YAML"),
    "no-info.json": (b'{"openapi": "3.1.0", "paths": {}}', "'info' is a required property"),
    "bad-path.yaml": (
        b"openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  users: {}\n",
        "not an OpenAPI 3.x document",
    ),
    "external.yaml": (
        b"openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
        b"paths:\n  /a: {$ref: 'other.yaml#/paths/~1a'}\n",
        "points outside the document",
    ),
    "dangling.yaml": (
        b"openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
        b"paths:\n  /a: {$ref: '#/components/pathItems/none'}\n",
        "not an OpenAPI 3.x document",
    ),
    "ref-number.yaml": (
        b"openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a: {$ref: 5}\n",
        "$ref 5 is not a string",
    ),
    "empty.yaml": (b"", "the top level is nothing"),
    "binary.bin": (bytes(range(256)), "neither JSON nor YAML"),
    "deep.json": (DEEP, "not an OpenAPI 3.x document"),
}


@pytest.mark.parametrize("name", list(ODD))
def test_odd_documents_are_one_line_errors(tmp_path: Path, name: str) -> None:
    content, message = ODD[name]
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(SourceError) as caught:
        load_document(str(source))
    text = str(caught.value)
    assert text.startswith(f"{source}: "), text
    assert message in text, text
    assert "\n" not in text


def test_a_directory_or_a_missing_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read: Is a directory"):
        load_document(str(tmp_path))
    with pytest.raises(SourceError, match="cannot read: No such file or directory"):
        load_document(str(tmp_path / "nope.json"))


def test_a_file_url_is_a_path() -> None:
    assert len(load_document(f"file://{LEGACY}").operations) == 9


async def serve(aiohttp_server: Any, handler: Any) -> str:
    app = web.Application()
    app.router.add_get("/doc", handler)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/doc"


async def test_an_http_error_is_named(aiohttp_server: Any) -> None:
    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    url = await serve(aiohttp_server, missing)
    with pytest.raises(SourceError) as caught:
        await asyncio.to_thread(load_document, url)
    assert str(caught.value) == f"{url}: cannot read: HTTP 404 Not Found"


async def test_a_server_that_never_answers_is_given_up_on(aiohttp_server: Any) -> None:
    release = asyncio.Event()

    async def stalled(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=503)

    url = await serve(aiohttp_server, stalled)
    try:
        with pytest.raises(SourceError, match=r"cannot read: no answer within 0\.5 s"):
            await asyncio.wait_for(asyncio.to_thread(load_document, url, 0.5), 30)
    finally:
        release.set()


async def test_an_endless_answer_stops_at_the_deadline(aiohttp_server: Any) -> None:
    release = asyncio.Event()

    async def dribble(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while not release.is_set():
            await response.write(b" " * 1024)
            await asyncio.sleep(0.05)
        return response

    url = await serve(aiohttp_server, dribble)
    try:
        with pytest.raises(SourceError, match=r"not downloaded within 1 s"):
            await asyncio.wait_for(asyncio.to_thread(load_document, url, 1.0), 30)
    finally:
        release.set()


def test_an_already_parsed_document_is_validated_the_same_way() -> None:
    data = json.loads(LEGACY.read_text())
    assert len(document_from_data("legacy", data).operations) == 9
    with pytest.raises(SourceError, match=r"^legacy: not an OpenAPI 3\.x document: 'info'"):
        document_from_data("legacy", {"openapi": "3.0.3", "paths": {}})
