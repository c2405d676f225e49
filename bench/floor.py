"""The floor: what the least possible proxy on Turnout's stack costs per request.

    .venv/bin/python bench/floor.py            # nginx, and the floor proxy on uvloop and asyncio

The floor proxy is Turnout's stack with none of Turnout: one Python process,
httptools parsing both sides, callbacks only (no task, no future), a LIFO pool
of keep-alive upstream connections, every request to the bench's `legacy`
nginx backend, no routing, no decision, no metrics, no timeouts, no header
rewriting beyond the framing. Whatever Turnout costs above it is its features;
what the floor costs above nginx is CPython and the event loop. The load is the
bench's (`wrk -t1 -c50`, bench/users.lua), CPU per request from /proc as in
bench/run.py. Runs 3 x 5 s per target; prints the median.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/floor.py`: make `bench` importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import httptools

from bench import nginx, procs, wrk


class _Upstream(asyncio.Protocol):
    """One pooled connection to the backend; answers go straight to the client."""

    def __init__(self, pool: list[_Upstream]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.client: Any = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send(self, client: Any, head: bytes) -> None:
        self.client, self.headers, self.body = client, [], []
        self.transport.write(head)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        lines = [b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code()]
        for name, value in self.headers:
            if name.lower() not in (b"content-length", b"connection"):
                lines += [name, b": ", value, b"\r\n"]
        body = b"".join(self.body)
        lines += [b"content-length: %d\r\n\r\n" % len(body), body]
        client, self.client = self.client, None
        self.pool.append(self)
        if not client.is_closing():  # wrk closes its connections at the end of a run
            client.write(b"".join(lines))


class _Downstream(asyncio.Protocol):
    """One client connection: each parsed request goes to a pooled upstream connection."""

    def __init__(self, pool: list[_Upstream], port: int) -> None:
        self.pool, self.port = pool, port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        lines = [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            lines += [name, b": ", value, b"\r\n"]
        head = b"".join([*lines, b"\r\n"])
        while self.pool:
            up = self.pool.pop()
            if not up.transport.is_closing():
                up.send(self.transport, head)
                return
        asyncio.get_running_loop().create_task(self._connect(head))

    async def _connect(self, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: _Upstream(self.pool), "127.0.0.1", self.port)
        up.send(self.transport, head)


async def _serve(port: int, upstream_port: int) -> None:
    pool: list[_Upstream] = []
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: _Downstream(pool, upstream_port), "127.0.0.1", port)
    await asyncio.Event().wait()


def _measure(url: str, pid: int) -> tuple[float, float]:
    """(median req/s, median CPU µs per request) over 3 x 5 s, after 1 s of warm-up."""
    wrk.run(url, wrk.Load(1, 50, 1))
    rates, costs = [], []
    for _ in range(3):
        before = procs.cpu_seconds(procs.process_tree(pid))
        run = wrk.run(url, wrk.Load(1, 50, 5))
        costs.append((procs.cpu_seconds(procs.process_tree(pid)) - before) / run.requests * 1e6)
        rates.append(run.rps)
    return statistics.median(rates), statistics.median(costs)


def main() -> int:
    if sys.argv[1:2] == ["--serve"]:  # the floor proxy itself, in its own process
        if sys.argv[2] == "uvloop":
            import uvloop

            uvloop.install()
        asyncio.run(_serve(int(sys.argv[3]), int(sys.argv[4])))
        return 0
    procs.interrupt_on_sigterm()
    with (
        procs.temp_workdir("turnout-floor-") as workdir,
        nginx.backend(workdir / "backend") as backends,
    ):
        with nginx.proxy(workdir / "nginx-proxy", backends) as (url, pid):
            rps, cpu = _measure(url, pid)
            print(f"nginx          {rps:8.0f} req/s  {cpu:5.1f} us/req")
        for loop in ("uvloop", "asyncio"):
            port = procs.free_port()
            argv = [sys.executable, __file__, "--serve", loop, str(port), str(backends.legacy_port)]
            proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 10
                while procs.http_status(f"http://127.0.0.1:{port}/") != 200:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the floor proxy did not start")
                    time.sleep(0.05)
                rps, floor_cpu = _measure(f"http://127.0.0.1:{port}", proc.pid)
                print(f"floor-{loop:8} {rps:8.0f} req/s  {floor_cpu:5.1f} us/req"
                      f"  ({floor_cpu / cpu:.1f} x nginx)")  # fmt: skip
            finally:
                procs.stop(proc, grace_s=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
