"""Keys that validate but do nothing yet: named with their line by `check` and `read_config`.

Every key of this version is active (``canary.prometheus_url`` was the last), so
the mechanism is shown with ``prometheus_url`` put back on the list for a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main
from proxy.config import inactive
from proxy.config.loader import read_config

CONFIG = """\
backends:
  legacy: {url: 'http://127.0.0.1:8000'}
  new: {url: 'http://127.0.0.1:3000'}
discrepancy_log: /var/log/turnout/diffs.jsonl
flags:
  user-api:
    percent: 10
    shadow: {percent: 5}
    canary:
      steps: [10, 50]
      prometheus_url: http://127.0.0.1:9090
  plain: {percent: 50}
routes:
  - {path: /api/users/**, flag: user-api}
  - {path: /**, flag: plain}
"""


@pytest.fixture
def not_active_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(inactive.NOT_ACTIVE_IN_CANARY, "prometheus_url", "the fleet judge")


def test_every_key_of_this_version_is_active(tmp_path: Path) -> None:
    path = tmp_path / "turnout.yaml"
    path.write_text(CONFIG)
    assert read_config(str(path)).warnings == ()


@pytest.fixture
def config(tmp_path: Path, not_active_yet: None) -> Path:
    path = tmp_path / "turnout.yaml"
    path.write_text(CONFIG)
    return path


def test_read_config_lists_every_inactive_key_with_its_line(config: Path) -> None:
    warnings = read_config(str(config)).warnings
    # shadow, the discrepancy log and the canary are active; the stand-in is not
    assert [(w.line, w.path) for w in warnings] == [(11, "flags.user-api.canary.prometheus_url")]
    for warning in warnings:
        assert warning.file == str(config)
        assert warning.message.startswith("accepted but not active yet")


def test_check_warns_on_stderr_and_still_passes(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{config}: ok: 2 backends, 2 flags, 2 routes, listen 0.0.0.0:8080, " \
        "admin 127.0.0.1:9901\n"  # fmt: skip
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"{config}:11: flags.user-api.canary.prometheus_url: warning: accepted but not active"
    )


def test_a_config_without_them_has_no_warnings(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(CONFIG.replace("discrepancy_log", "# discrepancy_log").split("    shadow")[0])
    path.write_text(path.read_text() + "routes: [{path: /**, flag: user-api}]\n")
    assert read_config(str(path)).warnings == ()
