"""The proxy's listening sockets, accepting connections in batches.

Why not ``loop.create_server``: libuv, the engine under uvloop, accepts one
connection per loop iteration since 1.45 (libuv#3696, "don't accept()
connections in a loop"). A loaded proxy's iteration serves hundreds of
events, so a burst of new connections waited seconds in the kernel's accept
queue: at 1,000 connections opening at once, wrk's p99 was 3 s with uvloop
while the proxy's own latency histogram never exceeded 0.25 s, and
``strace`` counted 251 ``accept4`` calls in 4 s with hundreds pending
(bench/README.md). asyncio's selector loop accepts up to ``backlog`` per
wake-up. This listener does the same on either loop: every time a socket is
readable it accepts up to ``ACCEPT_BATCH`` connections, then hands each to the
loop (``connect_accepted_socket``) with the protocol of ``factory``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import structlog

_log = structlog.get_logger("turnout.listener")

ACCEPT_BATCH = 256
"""Connections accepted per wake-up at most: a burst is taken in a few loop
iterations, while requests on open connections still get their turn in between."""
ACCEPT_RETRY_SECONDS = 1.0
"""Pause after accept() fails for want of file descriptors (asyncio waits as long)."""


async def open_listener(
    host: str,
    port: int,
    *,
    backlog: int,
    reuse_port: bool,
    factory: Callable[[], asyncio.Protocol],
) -> Listener:
    """Bind ``host:port`` (every address it resolves to) and start accepting.

    Raises ``OSError`` when an address cannot be bound (busy port, no such address).
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return Listener(loop, sockets, factory)


class Listener:
    """Accepts on its sockets until ``close``; see the module docstring for why."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._loop = loop
        self.sockets = sockets
        self._factory = factory
        self._closed = False
        for sock in sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop accepting and close the listening sockets (open connections stay)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing (more) to accept, or the client gave up meanwhile
            except OSError as error:  # EMFILE, ENFILE, ENOBUFS: shed load for a moment
                _log.error("accept_failed", error=str(error), retry_in=ACCEPT_RETRY_SECONDS)
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(ACCEPT_RETRY_SECONDS, self._resume, sock)
                return
            self._start(conn)

    def _resume(self, sock: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _start(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
        task.add_done_callback(lambda done: _setup_done(done, conn))


def _setup_done(task: asyncio.Task[object], conn: socket.socket) -> None:
    """A connection that failed while being set up (reset at once) is only closed."""
    error = None if task.cancelled() else task.exception()
    if task.cancelled() or error is not None:
        _log.debug("accepted_connection_failed", error=repr(error))
        conn.close()
