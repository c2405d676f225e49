"""Why `turnout serve` could not start, in one line for the operator.

A start-up failure (a listen address that is taken, workers that cannot start)
is an ``StartupError``; the CLI prints its message on one line and exits 1.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable
from typing import TypeVar

from proxy.config.models import HostPort

T = TypeVar("T")


class StartupError(Exception):
    """`turnout serve` cannot run; ``str()`` is the line the operator sees."""


class ListenError(StartupError):
    """A listen address (``key`` is its config key) cannot be bound."""

    def __init__(self, key: str, address: HostPort, error: OSError) -> None:
        super().__init__(f"cannot listen on {address} ({key}): {_reason(error)}")


def _reason(error: OSError) -> str:
    """``Address already in use`` rather than asyncio's long wording of it."""
    if error.errno is not None and error.errno > 0:
        text = os.strerror(error.errno)
    else:  # getaddrinfo's errors carry negative codes and their own text
        text = error.strerror or str(error)
    return text[:1].lower() + text[1:]


async def bind(starting: Awaitable[T], key: str, address: HostPort) -> T:
    """Await a listener's start; a bind failure becomes a ``ListenError``."""
    try:
        return await starting
    except OSError as error:
        raise ListenError(key, address, error) from None


def probe(key: str, address: HostPort) -> None:
    """Bind ``address`` and let it go at once, with the options the workers use.

    With SO_REUSEPORT a worker shares the port with its siblings, but not with
    a process that holds it without the option (another server): that bind
    fails here, once, before any worker is started.
    """
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            address.host or None, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(where)
    except OSError as error:
        raise ListenError(key, address, error) from None
