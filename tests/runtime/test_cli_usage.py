"""The command line's usage errors and help texts (no process is started)."""

from __future__ import annotations

import os

import pytest

from proxy.cli import main

ADMIN_COMMANDS_THAT_CHANGE = ("set", "rollback", "resume")


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI, expect argparse's usage exit (2); its stderr."""
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    assert caught.value.code == 2
    return capsys.readouterr().err


def test_an_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "serve", "-c", "missing.yaml", "--log-level", "loud")
    assert "--log-level: invalid choice: 'loud'" in err
    assert "debug" in err and "error" in err


@pytest.mark.parametrize("workers", ["0", "-3", "two"])
def test_workers_must_be_a_positive_whole_number(
    capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    err = usage_error(capsys, "serve", "-c", "missing.yaml", "--workers", workers)
    assert f"--workers: expected a whole number of at least 1 or 'auto', got {workers!r}" in err


def test_no_arguments_print_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2  # a usage error, as argparse's own
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: turnout")
    for command in ("serve", "check", "demo", "status", "set", "rollback", "resume"):
        assert f"    {command} " in err, command


@pytest.mark.parametrize(
    ("command", "description"),
    [
        ("serve", "Run the proxy and its admin API until SIGTERM or SIGINT"),
        ("check", "Validate a config file"),
        ("demo", "Start two sample backends"),
        ("status", "Show every flag"),
        ("set", "Override a flag's percent at runtime"),
        ("rollback", "Send a flag (or, with --all, every flag) to legacy"),
        ("resume", "Clear a flag's runtime override"),
    ],
)
def test_each_command_help_has_a_description(
    capsys: pytest.CaptureFixture[str], command: str, description: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert description in " ".join(out.split())
    if command in ADMIN_COMMANDS_THAT_CHANGE:
        assert "TURNOUT_ADMIN_TOKEN" in out


def test_workers_auto_is_one_per_usable_core() -> None:
    from proxy.cli import _parser

    args = _parser().parse_args(["serve", "-c", "x.yaml", "--workers", "auto"])
    assert args.workers == len(os.sched_getaffinity(0)) >= 1
    assert _parser().parse_args(["serve", "-c", "x.yaml", "--workers", "3"]).workers == 3
