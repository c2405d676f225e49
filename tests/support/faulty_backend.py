"""A fault-injecting HTTP/1.1 backend for fallback, health-check and outlier tests.

Real sockets on 127.0.0.1, requests parsed by hand over ``asyncio.StreamReader``.
A test flips the fault at run time and reads back what the backend saw::

    backend = FaultyBackend("new")
    await backend.start()
    backend.set_fault(Fault.STATUS, status=503, methods={"POST"}, paths={"/api/x"})
    backend.set_fault(Fault.REFUSE)
    await backend.apply()          # the listener is now closed (connections refused)
    ...
    await backend.stop()

``set_fault`` is synchronous. Per-request faults take effect for the next request
read. Switching to or from ``REFUSE`` closes/reopens the listener (on the same
port) in a background task: ``await backend.apply()`` waits until the listener is
in the requested state. Flips may be issued as fast as wanted; they are applied
in order and the last one wins. ``REFUSE`` also closes every open connection, as
a crashed process would.

``wait_seen(...)`` and ``wait_idle()`` let a test wait for the backend without
polling (wrap them in ``asyncio.timeout``). ``paths`` match the request path
without its query string; ``methods`` are compared upper-case. ``GET health_path``
answers 200 or 503 as ``set_health`` says, whatever the main fault is (except
``REFUSE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
import struct
import time
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEADERS = 100
MAX_LINE = 65536


class Fault(enum.Enum):
    NONE = "none"  # 200 JSON {"backend", "method", "path"}, keep-alive
    REFUSE = "refuse"  # listener closed: connections refused (reopened on the same port)
    HANG = "hang"  # read the request, never answer
    RESET_MID_BODY = "reset_mid_body"  # Content-Length: 100000, ~1000 bytes, then RST
    CLOSE_AFTER_HEADERS = "close_after_headers"  # Content-Length: 100, then FIN, no body
    DRIP = "drip"  # Content-Length: 20, one body byte per second
    BAD_CONTENT_LENGTH = "bad_content_length"  # "Content-Length: abc"
    GARBAGE_STATUS = "garbage_status"  # "HTTP/1.1 abc WHAT"
    STATUS = "status"  # the given status with a small JSON body, keep-alive


@dataclass
class SeenRequest:
    """One request whose head was fully received; ``body`` fills in as it is read."""

    method: str
    path: str  # the request target as sent (query string included)
    version: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    at: float = field(default_factory=time.monotonic)
    body: bytes = b""
    body_complete: bool = False


@dataclass(frozen=True)
class _Rule:
    fault: Fault = Fault.NONE
    status: int = 503
    methods: frozenset[str] | None = None
    paths: frozenset[str] | None = None

    def applies(self, request: SeenRequest) -> bool:
        path = _bare(request.path)
        return (self.methods is None or request.method in self.methods) and (
            self.paths is None or path in self.paths
        )


class _BadRequest(ValueError):
    pass


class FaultyBackend:
    health_path: str = "/health"
    drip_interval: float = 1.0  # seconds between DRIP body bytes
    reset_delay: float = 0.05  # RESET_MID_BODY: let the body bytes land before the RST

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.requests: list[SeenRequest] = []
        self.connections_accepted = 0
        self._rule = _Rule()
        self._healthy = True
        self._running = False
        self._accepting = False
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()  # replaced after each wake-up

    # -- control ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def fault(self) -> Fault:
        return self._rule.fault

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        self._running = True
        await self._reconcile()

    async def stop(self) -> None:
        """Close the listener and every open connection; end every task started."""
        self._running = False
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self._reconcile()

    def set_fault(
        self,
        fault: Fault,
        *,
        status: int = 503,
        methods: set[str] | None = None,
        paths: set[str] | None = None,
    ) -> None:
        upper = frozenset(m.upper() for m in methods) if methods is not None else None
        only = frozenset(paths) if paths is not None else None
        self._rule = _Rule(fault, status, upper, only)
        if self._running:
            task = asyncio.get_running_loop().create_task(self._reconcile())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def apply(self) -> None:
        """Wait until every scheduled listener change (REFUSE on/off) is done."""
        while self._pending:
            await asyncio.gather(*self._pending)

    async def wait_seen(
        self, method: str | None = None, path: str | None = None, count: int = 1
    ) -> list[SeenRequest]:
        """Wait until ``count`` matching requests were seen (heads); wrap in a timeout."""
        while len(found := self.seen(method, path)) < count:
            await self._changed.wait()
        return found

    async def wait_idle(self) -> None:
        """Wait until no client connection is open; wrap in a timeout."""
        while self._conns:
            await self._changed.wait()

    def _notify(self, *_: object) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def set_health(self, ok: bool) -> None:
        self._healthy = ok

    def seen(self, method: str | None = None, path: str | None = None) -> list[SeenRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path is None or _bare(r.path) == path)
        ]

    # -- listener ----------------------------------------------------------------
    async def _reconcile(self) -> None:
        async with self._lock:
            want = self._running and self._rule.fault is not Fault.REFUSE
            if want and self._server is None:
                sock = self._bind()
                self._accepting = True
                self._server = await asyncio.start_server(
                    self._on_client, sock=sock, limit=MAX_LINE
                )
            elif not want:
                self._accepting = False
                if self._server is not None:
                    self._server.close()  # closes the listening socket now
                    self._server = None
                await self._drop_connections()

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return sock

    async def _drop_connections(self) -> None:
        tasks = list(self._conns)
        for task, writer in self._conns.items():
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the transports' connection_lost close the sockets

    # -- connections ---------------------------------------------------------------
    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Synchronous on purpose: the task is registered the moment the connection is made.
        if not self._accepting:  # accepted just before the listener closed
            writer.transport.abort()
            return
        self.connections_accepted += 1
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._conns[task] = writer
        task.add_done_callback(self._conns.pop)
        task.add_done_callback(self._notify)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._serve_one(reader, writer):
                pass
        except ValueError:  # _BadRequest, an over-long line, a bad chunk size
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(_head(400, 0, close=True))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request or mid-response
        finally:
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must end."""
        request = await self._read_request(reader)
        if request is None:
            return False
        rule, name = self._rule, self.name
        if request.method == "GET" and _bare(request.path) == self.health_path:
            body = {"backend": name, "healthy": self._healthy}
            return await _send(writer, request, 200 if self._healthy else 503, body)
        if rule.fault in (Fault.NONE, Fault.REFUSE) or not rule.applies(request):
            body = {"backend": name, "method": request.method, "path": request.path}
            return await _send(writer, request, 200, body)
        if rule.fault is Fault.STATUS:
            body = {"backend": name, "status": rule.status, "error": "injected"}
            return await _send(writer, request, rule.status, body)
        return await self._misbehave(rule.fault, request, reader, writer)

    async def _misbehave(
        self,
        fault: Fault,
        request: SeenRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if fault is Fault.HANG:
            while await reader.read(65536):
                pass  # never answer; end when the client goes away
        elif fault is Fault.RESET_MID_BODY:
            await self._reset_mid_body(writer)
        elif fault is Fault.DRIP:
            return await self._drip(writer, request)
        else:
            writer.write(_BROKEN_HEADS[fault])
            await writer.drain()
        return False  # close (FIN) after the broken answer

    async def _reset_mid_body(self, writer: asyncio.StreamWriter) -> None:
        writer.write(_head(200, 100_000) + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(self.reset_delay)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _drip(self, writer: asyncio.StreamWriter, request: SeenRequest) -> bool:
        keep = _keep_alive(request)
        writer.write(_head(200, 20, close=not keep, content_type="text/plain"))
        await writer.drain()
        for byte in b"drip-drip-drip-drip!":
            await asyncio.sleep(self.drip_interval)
            writer.write(bytes([byte]))
            await writer.drain()
        return keep

    # -- parsing -------------------------------------------------------------------
    async def _read_request(self, reader: asyncio.StreamReader) -> SeenRequest | None:
        request = await _read_head(reader)
        if request is not None:
            self.requests.append(request)
            self._notify()
            await _read_body(reader, request)
            self._notify()
        return request


async def _read_head(reader: asyncio.StreamReader) -> SeenRequest | None:
    line = await reader.readline()
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
        line = await reader.readline()
    if not line:
        return None  # clean EOF between requests
    parts = _line(line).split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(line)
    method, target, version = parts
    return SeenRequest(method.upper(), target, version, await _read_headers(reader))


def _line(raw: bytes) -> str:
    if not raw.endswith(b"\n"):
        raise asyncio.IncompleteReadError(raw, None)  # EOF inside the line
    return raw.decode("latin-1").rstrip("\r\n")


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = _line(await reader.readline())
        if not line:
            return headers
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(line)
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise _BadRequest("too many header fields")


async def _read_body(reader: asyncio.StreamReader, request: SeenRequest) -> None:
    headers = request.headers
    if "chunked" in headers.get("transfer-encoding", "").lower():
        await _read_chunked(reader, request)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit():
            raise _BadRequest(length)
        request.body = await reader.readexactly(int(length))
    request.body_complete = True


async def _read_chunked(reader: asyncio.StreamReader, request: SeenRequest) -> None:
    while True:
        size = int(_line(await reader.readline()).split(";", 1)[0].strip(), 16)
        if size == 0:
            while _line(await reader.readline()):
                pass  # trailer fields
            return
        request.body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadRequest("chunk not followed by CRLF")


def _keep_alive(request: SeenRequest) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _head(
    status: int, length: int, *, close: bool = False, content_type: str = "application/json"
) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        f"Connection: {'close' if close else 'keep-alive'}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter, request: SeenRequest, status: int, body: object
) -> bool:
    """A JSON answer (no body for HEAD); returns whether to keep the connection."""
    data, keep = json.dumps(body).encode(), _keep_alive(request)
    writer.write(_head(status, len(data), close=not keep))
    if request.method != "HEAD":
        writer.write(data)
    await writer.drain()
    return keep


def _bare(target: str) -> str:
    return target.split("?", 1)[0]


_BROKEN_HEADS = {
    Fault.CLOSE_AFTER_HEADERS: _head(200, 100),
    Fault.BAD_CONTENT_LENGTH: b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
    Fault.GARBAGE_STATUS: b"HTTP/1.1 abc WHAT\r\n\r\n",
}
