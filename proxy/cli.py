"""The `turnout` command line (SPEC §2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.config_loader import ConfigError, summarize


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
    return parser


def _serve(args: argparse.Namespace) -> int:
    from proxy.app import read_config
    from proxy.log import configure_logging

    configure_logging(args.log_level)
    try:
        loaded = read_config(args.config)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    if args.worker_socket:
        from proxy.workers import worker_main

        return worker_main(loaded, args.worker_socket)
    from proxy.serve import run_serve

    return run_serve(loaded, max(1, args.workers))


def _check(args: argparse.Namespace) -> int:
    from proxy.app import read_config

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": _serve, "check": _check, "demo": _demo}
    return handlers[args.command](args)
