"""Small helpers for the HTTP behaviour tests: recording backends, a raw HTTP/1.1
client with read deadlines, free ports and Prometheus scrapes. No mocks: every
helper talks real HTTP over 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

READ_DEADLINE = 5.0


class HeaderLines:
    """Lookups over raw header lines kept in order (names compared case-insensitively)."""

    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    def header(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None


# -- what a backend saw ---------------------------------------------------------
@dataclass
class Seen(HeaderLines):
    """One request as a backend received it (raw header lines, in order)."""

    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    body_complete: bool = False

    def has(self, name: str) -> bool:
        return bool(self.values(name))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class Recorder:
    """Every request a backend received, in arrival order."""

    seen: list[Seen] = field(default_factory=list)

    async def record(self, request: web.BaseRequest, *, read_body: bool = True) -> Seen:
        entry = Seen(
            request.method,
            request.path_qs,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        )
        self.seen.append(entry)
        if read_body:
            entry.body = await request.read()
            entry.body_complete = True
        return entry


def recording_app(name: str, recorder: Recorder | None = None) -> web.Application:
    """A catch-all backend answering JSON about what it received (and who it is)."""

    async def handle(request: web.Request) -> web.Response:
        seen = await (recorder or Recorder()).record(request)
        return web.json_response(
            {
                "backend": name,
                "method": seen.method,
                "path": seen.path_qs,
                "length": len(seen.body),
                "sha256": seen.sha256,
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


# -- a raw HTTP/1.1 client --------------------------------------------------------
@dataclass
class RawResponse(HeaderLines):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class RawConnection:
    """Hand-written requests on one TCP connection; every read has a deadline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), READ_DEADLINE
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False, timeout: float = READ_DEADLINE) -> RawResponse:
        """Read one response; ``head`` = it answers a HEAD request (never a body)."""
        async with asyncio.timeout(timeout):
            return await self._read_response(head)

    async def _read_response(self, head: bool) -> RawResponse:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        response = RawResponse(status, headers, b"")
        if head or status in (204, 304) or 100 <= status < 200:
            return response
        length = response.header("content-length")
        if length is not None:
            response.body = await self.reader.readexactly(int(length))
        elif "chunked" in (response.header("transfer-encoding") or "").lower():
            response.body = await self._read_chunked()
        else:
            response.body = await self.reader.read()  # close-delimited
        return response

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailer fields
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def closed_by_peer(self, timeout: float = READ_DEADLINE) -> bool:
        """True when the peer closed (EOF or reset) within ``timeout``; unread bytes are dropped."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def request_bytes(
    method: str, path: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> bytes:
    """An HTTP/1.1 request with Host: test; adds Content-Length when there is a body."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- misc ----------------------------------------------------------------------------
def unused_port() -> int:
    """A port nothing listens on (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape(admin_port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin_port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``, or None."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None
