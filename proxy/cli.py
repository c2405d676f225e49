"""The `turnout` command line (SPEC §2)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from proxy import __version__
from proxy.config.loader import ConfigError, read_config, summarize
from proxy.coverage.command import add_coverage_parser, run_coverage

LOG_LEVELS = ("debug", "info", "warning", "error")
_TOKEN_EPILOG = (
    "Needs the admin token: the CLI sends $TURNOUT_ADMIN_TOKEN (or the variable named by "
    "admin.token_env of -c FILE) as a bearer token; turnout serve must have the same token "
    "in its environment, else runtime changes are disabled."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="A reverse proxy for moving an API from a legacy backend to a new one.",
    )
    parser.add_argument("--version", action="version", version=f"turnout {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = _command(
        commands,
        "serve",
        "run the proxy and its admin API",
        "Run the proxy and its admin API until SIGTERM or SIGINT, then drain the requests "
        "in flight (drain_timeout) and exit 0. Exits 1 when the config is invalid or a "
        "listen address cannot be bound.",
    )
    serve.add_argument("-c", "--config", required=True, help="the YAML config file")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="worker processes sharing the proxy port (SO_REUSEPORT); auto: one per core; "
        "default 1",
    )
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="default: info")
    serve.add_argument("--worker-socket", help=argparse.SUPPRESS)
    serve.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)

    check = _command(
        commands,
        "check",
        "validate a config file",
        "Validate a config file: exit 0 with a one-line summary, or exit 1 with every error "
        "as FILE:LINE: key.path: message. Keys that are accepted but not active yet are "
        "named as warnings on stderr.",
    )
    check.add_argument("-c", "--config", required=True, help="the YAML config file")

    demo = _command(
        commands,
        "demo",
        "sample backends, the proxy and live traffic",
        "Start two sample backends (legacy and new), the proxy in front of them and a "
        "traffic generator, and print a live summary.",
    )
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
    add_coverage_parser(commands)
    return parser


def _command(commands: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_, description=description)
    return parser


def _workers(text: str) -> int:
    """A worker count: a whole number of at least 1, or ``auto`` for one per core."""
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of at least 1 or 'auto', got {text!r}"
        )
    return count


def _add_admin_commands(commands: Any) -> None:
    """`status`, `set`, `rollback`, `resume`, `promote`: runtime control through the admin
    API."""
    _admin_parser(
        commands,
        "status",
        "the table of flags, traffic and errors",
        "Show every flag of a running turnout serve: phase, percent (with any runtime "
        "override), requests/s, error rate and p99 per backend.",
    )
    set_ = _admin_parser(
        commands,
        "set",
        "set a flag's percent at runtime (until resume)",
        "Override a flag's percent at runtime: it beats the config file's percent, across "
        "reloads and restarts, until `turnout resume FLAG`. Refused while the flag is rolled "
        "back (resume it first).",
        epilog=_TOKEN_EPILOG,
    )
    set_.add_argument("flag")
    set_.add_argument("percent", type=_percent, help="0..100, e.g. 25 or 25%%")
    rollback = _admin_parser(
        commands,
        "rollback",
        "send a flag (or every flag) to legacy",
        "Send a flag (or, with --all, every flag) to legacy: 0 % until `turnout resume "
        "FLAG`; `turnout set` is refused meanwhile.",
        epilog=_TOKEN_EPILOG,
    )
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument("flag", nargs="?")
    which.add_argument("--all", action="store_true", help="roll back every flag")
    resume = _admin_parser(
        commands,
        "resume",
        "clear a flag's override: back to the file",
        "Clear a flag's runtime override (set or rollback): the flag follows the config "
        "file's percent again, and a paused or rolled-back canary restarts. Without an "
        "override it changes nothing and says so.",
        epilog=_TOKEN_EPILOG,
    )
    resume.add_argument("flag")
    promote = _admin_parser(
        commands,
        "promote",
        "pass a canary's confirm_promotion gate: the flag to 100%%",
        "Promote a flag whose canary holds at its last step (canary.confirm_promotion): "
        "the flag goes to 100 %% and the canary ends as promoted. Refused for a flag "
        "without a canary or with a rolled-back one.",
        epilog=_TOKEN_EPILOG,
    )
    promote.add_argument("flag")


def _percent(text: str) -> float:
    from proxy.admin.client import percent_argument

    try:
        return percent_argument(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"percent {error}") from None


def _admin_parser(
    commands: Any, name: str, help_: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_, description=description, epilog=epilog
    )
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
    from proxy.runtime.startup import StartupError

    configure_logging(args.log_level)
    try:
        loaded = read_config(args.config)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    if args.worker_socket:
        from proxy.runtime.workers import worker_main

        return worker_main(loaded, args.worker_socket, args.worker_id)
    from proxy.runtime.serve import run_serve

    try:
        return run_serve(loaded, args.workers)
    except StartupError as error:
        sys.stderr.write(f"turnout serve: {error}\n")
        return 1


def _check(args: argparse.Namespace) -> int:
    from proxy.runtime.app import fleet_canary_warning, read_config

    try:
        loaded = read_config(args.config)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    for warning in loaded.warnings:
        sys.stderr.write(
            f"{warning.file}:{warning.line}: {warning.path}: warning: {warning.message}\n"
        )
    fleet_warning = fleet_canary_warning(loaded.config)
    if fleet_warning is not None:
        sys.stderr.write(f"{args.config}: state_store: warning: {fleet_warning}\n")
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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `turnout` alone: the help, as a usage error
        parser.print_help(sys.stderr)
        return 2
    handlers = {
        "serve": _serve,
        "check": _check,
        "demo": _demo,
        "diffs": _diffs,
        "coverage": run_coverage,
    }
    return handlers.get(args.command, _admin)(args)
