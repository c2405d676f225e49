"""`turnout serve` as a real process when it cannot run: busy ports, workers that crash.

Every start-up failure ends with exit code 1 and one line naming what went
wrong on stderr, never a traceback or a supervisor that restarts forever.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.test_serve_process import turnout_process, wait_ready, write_config

EXIT_SECONDS = 20


@pytest.fixture
def busy() -> Iterator[list[socket.socket]]:
    """Sockets that hold ports the way another server would (bound and listening)."""
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def children(pid: int) -> set[int]:
    """The worker processes of ``pid`` (none once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(child) for child in text.split()}


def occupy(held: list[socket.socket], port: int) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    held.append(sock)


async def run_to_exit(config: Path, *args: str) -> tuple[int | None, str, str]:
    process = await turnout_process("serve", config, *args)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=EXIT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"turnout serve {' '.join(args)} did not exit") from None
    return process.returncode, out.decode(), err.decode()


def assert_one_line_about(err: str, out: str, address: str, key: str) -> None:
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"cannot listen on {address} ({key})" in lines[0]
    assert "address already in use" in lines[0].lower()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_busy_proxy_port_exits_1_with_one_line(
    tmp_path: Path, busy: list[socket.socket], workers: str
) -> None:
    config, port, _ = write_config(tmp_path, "http://127.0.0.1:9")
    occupy(busy, port)
    code, out, err = await run_to_exit(config, "--workers", workers)
    assert code == 1
    assert_one_line_about(err, out, f"127.0.0.1:{port}", "listen")


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_busy_admin_port_exits_1_with_one_line(
    tmp_path: Path, busy: list[socket.socket], workers: str
) -> None:
    config, port, admin = write_config(tmp_path, "http://127.0.0.1:9")
    occupy(busy, admin)
    code, out, err = await run_to_exit(config, "--workers", workers)
    assert code == 1
    assert_one_line_about(err, out, f"127.0.0.1:{admin}", "admin.listen")
    with socket.socket() as probe:  # the proxy port it did bind was let go
        probe.bind(("127.0.0.1", port))


async def test_a_crash_looping_worker_makes_the_supervisor_give_up(tmp_path: Path) -> None:
    config, _, admin = write_config(tmp_path, "http://127.0.0.1:9")
    process = await turnout_process("serve", config, "--workers", "2")
    try:
        await wait_ready(admin, process)
        deadline = time.monotonic() + 60
        kills = 0
        while process.returncode is None and kills < 8:
            current = children(process.pid)
            if len(current) == 2:  # both workers up: crash one of them
                os.kill(min(current), signal.SIGKILL)
                kills += 1
                while children(process.pid) == current and process.returncode is None:
                    assert time.monotonic() < deadline, "the dead worker was never reaped"
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
            assert time.monotonic() < deadline, "the supervisor neither restarted nor gave up"
        out, err = await asyncio.wait_for(process.communicate(), timeout=EXIT_SECONDS)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=EXIT_SECONDS)
    assert (process.returncode, kills) == (1, 5), out.decode() + err.decode()
    gave_up = [line for line in out.decode().splitlines() if "workers_crash_looping" in line]
    assert len(gave_up) == 1
    assert "5 worker exits within 30 s" in gave_up[0]


async def test_an_unknown_event_loop_exits_1_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_LOOP", "tokio")
    config, _, _ = write_config(tmp_path, "http://127.0.0.1:9")
    code, out, err = await run_to_exit(config)
    assert code == 1
    assert "Traceback" not in err + out
    assert err.strip().splitlines() == [
        "turnout serve: TURNOUT_LOOP='tokio': use 'uvloop' (the default) or 'asyncio'"
    ]
