"""ConfigWatcher: in-place writes, ConfigMap symlink swaps, debouncing, missing files, stop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from proxy.control.watch import ConfigWatcher, fingerprint

FAST = {"interval": 0.05, "debounce": 0.1}


class Calls:
    """Counts ``on_change`` calls; ``next()`` waits for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()
        self.fail = False

    async def __call__(self) -> None:
        self.count += 1
        self.event.set()
        if self.fail:
            raise RuntimeError("reload exploded")

    async def next(self, timeout: float = 2.0) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()

    async def none_within(self, seconds: float) -> None:
        """Pass only if no call arrives in ``seconds`` (the wait must time out)."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)


MakeWatcher = Callable[..., Awaitable[tuple[ConfigWatcher, Calls]]]


@pytest.fixture
async def watch() -> AsyncIterator[MakeWatcher]:
    watchers: list[ConfigWatcher] = []

    async def make(path: Path, **options: float) -> tuple[ConfigWatcher, Calls]:
        calls = Calls()
        watcher = ConfigWatcher(str(path), calls, **{**FAST, **options})
        await watcher.start()
        watchers.append(watcher)
        return watcher, calls

    yield make
    for watcher in watchers:
        await watcher.stop()


async def test_in_place_write_is_detected(tmp_path: Path, watch: MakeWatcher) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("flags: {}\n")
    _, calls = await watch(config)

    with config.open("a") as handle:
        handle.write("# edited\n")

    await calls.next()
    assert calls.count == 1


def configmap(root: Path, version: str, text: str) -> None:
    (root / f"..{version}").mkdir()
    (root / f"..{version}" / "config.yaml").write_text(text)


async def test_configmap_symlink_swap_is_detected(tmp_path: Path, watch: MakeWatcher) -> None:
    configmap(tmp_path, "2026_01_01_a", "flags: {a: {percent: 10}}\n")
    os.symlink("..2026_01_01_a", tmp_path / "..data")
    os.symlink("..data/config.yaml", tmp_path / "config.yaml")
    old = tmp_path / "..2026_01_01_a" / "config.yaml"
    _, calls = await watch(tmp_path / "config.yaml")

    # Same size and mtime as the old file: only the links and the inode tell them apart.
    configmap(tmp_path, "2026_01_01_b", "flags: {a: {percent: 20}}\n")
    new = tmp_path / "..2026_01_01_b" / "config.yaml"
    os.utime(new, ns=(old.stat().st_atime_ns, old.stat().st_mtime_ns))
    os.symlink("..2026_01_01_b", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    await calls.next(timeout=2.0)
    assert (tmp_path / "config.yaml").read_text() == "flags: {a: {percent: 20}}\n"
    assert calls.count == 1


def test_fingerfoundfollows_the_links(tmp_path: Path) -> None:
    configmap(tmp_path, "v1", "x: 1\n")
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/config.yaml", tmp_path / "config.yaml")

    found = fingerprint(str(tmp_path / "config.yaml"))

    assert found.target is not None
    assert found.target.realpath == str((tmp_path / "..v1" / "config.yaml").resolve())
    assert [link[0] for link in found.links] == [
        str(tmp_path / "config.yaml"),
        str(tmp_path / "..data"),
    ]


async def test_a_burst_of_writes_is_one_call(tmp_path: Path, watch: MakeWatcher) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("v0\n")
    _, calls = await watch(config, interval=0.05, debounce=0.5)

    for n in range(1, 8):  # an editor saving in steps: 7 writes over ~0.35 s, 0.05 s apart
        config.write_text(f"v{n}\n" * n)  # the size changes every time, whatever the mtime says
        await asyncio.sleep(0.05)  # spacing the writes, not waiting for the watcher

    await calls.next()
    await calls.none_within(1.0)
    assert calls.count == 1


async def test_no_change_no_call(tmp_path: Path, watch: MakeWatcher) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("flags: {}\n")
    _, calls = await watch(config)

    await calls.none_within(1.5)
    assert calls.count == 0


async def test_missing_file_is_reported_once_then_its_return(
    tmp_path: Path, watch: MakeWatcher
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("flags: {}\n")
    _, calls = await watch(config)

    config.unlink()
    await calls.next()
    await calls.none_within(0.75)  # still missing: no second call, no spinning
    assert calls.count == 1

    config.write_text("flags: {}\n")
    await calls.next()
    assert calls.count == 2


async def test_a_failing_callback_does_not_stop_the_watcher(
    tmp_path: Path, watch: MakeWatcher
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("a\n")
    watcher, calls = await watch(config)
    calls.fail = True

    config.write_text("bb\n")
    await calls.next()
    config.write_text("ccc\n")
    await calls.next()

    assert calls.count == 2
    assert watcher.running


async def test_stop_ends_the_task(tmp_path: Path, watch: MakeWatcher) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("a\n")
    watcher, calls = await watch(config)
    task = watcher._task
    assert task is not None and watcher.running

    await watcher.stop()

    assert task.done() and not watcher.running
    config.write_text("changed after stop\n")
    await calls.none_within(0.5)
    assert calls.count == 0
    await watcher.stop()  # a second stop is harmless
