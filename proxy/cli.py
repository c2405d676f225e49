"""The `turnout` command line (SPEC §2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from proxy import __version__
from proxy.config.loader import ConfigError, read_config, summarize


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="A reverse proxy for moving an API from a legacy backend to a new one.",
    )
    parser.add_argument("--version", action="version", version=f"turnout {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy and its admin API")
    serve.add_argument("-c", "--config", required=True, help="the YAML config file")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (SO_REUSEPORT)")
    serve.add_argument("--log-level", default="info", help="debug, info, warning, error")
    serve.add_argument("--worker-socket", help=argparse.SUPPRESS)

    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("-c", "--config", required=True, help="the YAML config file")

    demo = commands.add_parser("demo", help="sample backends, the proxy and live traffic")
    demo.add_argument(
        "--duration", type=float, default=None, help="seconds (default: until Ctrl-C)"
    )
    diffs = commands.add_parser(
        "diffs",
        help="summarise the shadow discrepancy log",
        description="Top differing field paths per flag and route, with counts, noise "
        "flags and one example each, from the discrepancy log (and its rotated files).",
    )
    source = diffs.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--config", help="read discrepancy_log from this config")
    source.add_argument("--log", help="the discrepancy log file")
    diffs.add_argument("--flag", help="only this flag")
    _add_admin_commands(commands)
    return parser


def _add_admin_commands(commands: Any) -> None:
    """`status`, `set`, `rollback`, `resume`, `promote`: runtime control through the admin
    API."""
    _admin_parser(commands, "status", "the table of flags, traffic and errors")
    set_ = _admin_parser(commands, "set", "set a flag's percent at runtime (until resume)")
    set_.add_argument("flag")
    set_.add_argument("percent", type=_percent, help="0..100, e.g. 25 or 25%%")
    rollback = _admin_parser(commands, "rollback", "send a flag (or every flag) to legacy")
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument("flag", nargs="?")
    which.add_argument("--all", action="store_true", help="roll back every flag")
    resume = _admin_parser(commands, "resume", "clear a flag's override: back to the file")
    resume.add_argument("flag")
    promote = _admin_parser(
        commands, "promote", "pass a canary's confirm_promotion gate: the flag to 100%%"
    )
    promote.add_argument("flag")


def _percent(text: str) -> float:
    from proxy.admin.client import percent_argument

    try:
        return percent_argument(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"percent {error}") from None


def _admin_parser(commands: Any, name: str, help_: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_)
    parser.add_argument(
        "--admin",
        metavar="URL",
        help="admin API (default: $TURNOUT_ADMIN_URL, else admin.listen of -c, "
        "else http://127.0.0.1:9901)",
    )
    parser.add_argument("-c", "--config", help="read the admin address from this config")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from proxy.log import configure_logging
    from proxy.runtime.app import read_config

    configure_logging(args.log_level)
    try:
        loaded = read_config(args.config)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    if args.worker_socket:
        from proxy.runtime.workers import worker_main

        return worker_main(loaded, args.worker_socket)
    from proxy.runtime.serve import run_serve

    return run_serve(loaded, max(1, args.workers))


def _check(args: argparse.Namespace) -> int:
    from proxy.runtime.app import read_config

    try:
        loaded = read_config(args.config)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    sys.stdout.write(f"{args.config}: {summarize(loaded.config)}\n")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from proxy.demo.runner import main_demo
    from proxy.log import configure_logging

    configure_logging("warning")
    return main_demo(args.duration)


def _admin(args: argparse.Namespace) -> int:
    """Run one admin command; its output on stdout, a failure on stderr with its exit code."""
    import asyncio
    import os

    from proxy.admin.client import AdminClient, AdminError, admin_target, run_admin_command

    try:
        url, token_env = admin_target(args.admin, args.config, os.environ)
        client = AdminClient(url, os.environ.get(token_env), token_env=token_env)
        output = asyncio.run(
            run_admin_command(
                client, args.command, getattr(args, "flag", None), getattr(args, "percent", None)
            )
        )
    except AdminError as error:
        sys.stderr.write(f"turnout {args.command}: {error}\n")
        return error.exit_code
    sys.stdout.write(output)
    return 0


def _diffs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from proxy.shadow.summary import format_summary, log_files, summarize

    path = args.log
    if path is None:
        try:
            path = read_config(args.config).config.discrepancy_log
        except ConfigError as error:
            sys.stderr.write(f"{error}\n")
            return 1
        if path is None:
            sys.stderr.write(f"turnout diffs: {args.config} sets no discrepancy_log\n")
            return 1
    files = log_files(Path(path))
    if not files:
        sys.stderr.write(f"turnout diffs: {path}: no such file (no mismatch logged yet?)\n")
        return 1
    lines = (line for file in files for line in file.read_text("utf-8", "replace").splitlines())
    sys.stdout.write(format_summary(summarize(lines, args.flag)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": _serve, "check": _check, "demo": _demo, "diffs": _diffs}
    return handlers.get(args.command, _admin)(args)
