"""The state file: round trip, missing and corrupt files, and crash safety under kill -9."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from proxy.control.state import FlagOverride, RuntimeState, StateStore

ROOT = Path(__file__).resolve().parents[2]


def sample_state() -> RuntimeState:
    return (
        RuntimeState(canary={"user-api": {"state": "progressing", "step": 2}})
        .with_override("user-api", FlagOverride(25.5, "set", "127.0.0.1", 1_767_225_600.25))
        .with_override("billing", FlagOverride(0, "rollback", "10.1.2.3", 1_767_225_700))
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateStore(str(path)).save(sample_state())

    loaded = StateStore(str(path)).load()

    assert loaded == sample_state()
    assert loaded.percents() == {"user-api": 25.5, "billing": 0.0}
    assert b'"version": 1' in path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left over


def test_with_override_and_without_leave_the_original_alone() -> None:
    state = sample_state()
    resumed = state.without("user-api")
    assert resumed.percents() == {"billing": 0.0}
    assert resumed.canary == state.canary
    assert state.percents() == {"user-api": 25.5, "billing": 0.0}


def test_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert StateStore(str(tmp_path / "absent.json")).load() == RuntimeState()


def test_in_memory_store_keeps_the_last_save() -> None:
    store = StateStore(None)
    assert store.load() == RuntimeState()
    store.save(sample_state())
    assert store.load() == sample_state()


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": 1, "overrides": {"user-api": {"percent": 2',  # torn write
        b"not json at all",
        b'{"version": 2, "overrides": {}}',  # a newer format
        b'{"version": 1, "overrides": {"f": {"percent": 250, "reason": "set", "by": "", "at": 1}}}',
        b'{"version": 1, "overrides": {"f": {"percent": 5, "reason": "?", "by": "", "at": 1}}}',
        b"[]",
    ],
)
def test_corrupt_file_is_set_aside_and_logged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)

    with capture_logs() as logs:
        loaded = StateStore(str(path)).load()

    assert loaded == RuntimeState()
    assert not path.exists()
    (aside,) = tmp_path.glob("state.json.corrupt-*")
    assert aside.read_bytes() == content
    (event,) = [e for e in logs if e["event"] == "state_file_corrupt"]
    assert event["log_level"] == "error"
    assert event["set_aside_as"] == str(aside)
    assert event["reason"]


def test_a_second_corrupt_file_in_the_same_second_does_not_overwrite_the_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    for content in (b"first", b"second"):
        path.write_bytes(content)
        StateStore(str(path)).load()
    contents = sorted(p.read_bytes() for p in tmp_path.glob("state.json.corrupt-*"))
    assert contents == [b"first", b"second"]


# The writer saves ever larger states as fast as it can and reports each save on stdout.
_WRITER = """
import sys
from proxy.control.state import RuntimeState, StateStore
from tests.control.test_state import override_number

store = StateStore(sys.argv[1])
overrides = {}
for count in range(1, 5001):
    overrides[f"flag-{count:05d}"] = override_number(count)
    store.save(RuntimeState(dict(overrides), {"progress": {"saves": count}}))
    sys.stdout.write(f"{count}\\n")
    sys.stdout.flush()
"""


def override_number(i: int) -> FlagOverride:
    return FlagOverride(float(i % 101), "set", f"10.0.{i % 256}.{i % 7}", float(i))


def expected_state(count: int) -> RuntimeState:
    """The writer's ``count``-th save: ``count`` overrides (~130 bytes each on disk)."""
    overrides = {f"flag-{i:05d}": override_number(i) for i in range(1, count + 1)}
    return RuntimeState(overrides, {"progress": {"saves": count}})


@pytest.mark.parametrize("seed", range(10))
def test_state_file_survives_kill_9_during_a_write_burst(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "state.json"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "1\n"  # the first save is on disk: writing has begun
        # The random moment to kill at (not a wait for anything): 0 to ~150 saves later.
        time.sleep(random.Random(seed).uniform(0, 0.3))
        assert writer.poll() is None, "the writer finished before it could be killed"
        os.kill(writer.pid, signal.SIGKILL)
        reported = [1, *(int(line) for line in writer.stdout)]
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    loaded = StateStore(str(path)).load()

    saves = len(loaded.overrides)
    assert saves in (reported[-1], reported[-1] + 1)  # every reported save is on disk
    assert loaded == expected_state(saves)  # and the file is one whole save, not a torn one
    assert not list(tmp_path.glob("*.corrupt-*"))
