"""A real Redis (Debian's ``redis-server``) for the fleet tests: on a free loopback
port, no persistence, stopped by PID (never the system's own Redis on 6379).

Without a ``redis-server`` binary the tests that need one are skipped with the
command to install it; with ``CI`` set they fail instead (as tests/dashboards do).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.test_serve_process import free_port
from tests.support.tools import required_binary

INSTALL = "apt-get install -y --no-install-recommends redis-server"
START_SECONDS = 10.0


def redis_binary() -> str:
    return required_binary("redis-server", INSTALL)


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` again on the same port
    (an outage and its end)."""

    def __init__(self, binary: str, log: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, name: str = "test") -> str:
        return f"redis://127.0.0.1:{self.port}/0?name={name}"

    def start(self) -> None:
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
        ]  # fmt: skip
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server not up within {START_SECONDS:g} s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running ``RedisServer``, stopped at the end of the test."""
    server = RedisServer(redis_binary(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()
