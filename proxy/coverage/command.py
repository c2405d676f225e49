"""`turnout coverage`: its arguments and its run (the CLI's I/O shell)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FORMATS = ("table", "json", "markdown")


def add_coverage_parser(commands: Any) -> None:
    """The ``coverage`` subcommand of ``turnout``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "coverage", help="the migration map: the two OpenAPI documents against routes and flags"
    )
    parser.add_argument("-c", "--config", required=True, help="the YAML config file")
    parser.add_argument(
        "--legacy-openapi",
        metavar="SRC",
        help="legacy's OpenAPI document, a file or URL (default: coverage.legacy_openapi)",
    )
    parser.add_argument(
        "--new-openapi",
        metavar="SRC",
        help="new's OpenAPI document, a file or URL (default: coverage.new_openapi)",
    )
    parser.add_argument(
        "--write-routes",
        action="store_true",
        help="print draft flags and routes (YAML) for what no route covers",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="table (default), json or markdown"
    )
    parser.add_argument(
        "--admin",
        metavar="URL",
        help="a running Turnout's admin API: live percents and the share of live requests",
    )


def run_coverage(args: argparse.Namespace) -> int:
    """Print the map (or the draft); exit 1 with one line on stderr when an input is bad."""
    from proxy.admin.client import AdminError
    from proxy.config.loader import ConfigError
    from proxy.coverage.source import SourceError

    try:
        sys.stdout.write(_output(args))
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    except (SourceError, _UsageError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    except AdminError as error:
        sys.stderr.write(f"error: {error}\n")
        return error.exit_code
    return 0


class _UsageError(Exception):
    pass


def _output(args: argparse.Namespace) -> str:
    import orjson

    from proxy.config.loader import load_config
    from proxy.coverage.draft import draft_routes, render_draft
    from proxy.coverage.matching import coverage_map
    from proxy.coverage.render import render_markdown, render_table
    from proxy.coverage.report import live_requests, report_document, states_from_status
    from proxy.coverage.source import load_document

    config = load_config(args.config)
    legacy_src, new_src = _sources(args, config)
    coverage = coverage_map(load_document(legacy_src), load_document(new_src), config)
    if args.write_routes:
        return render_draft(draft_routes(coverage, config), coverage)
    states, live = None, None
    if args.admin:
        status = _status(args.admin)
        states, live = states_from_status(status), live_requests(status)
    document = report_document(coverage, config, states, live)
    if args.format == "json":
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    return render_markdown(document) if args.format == "markdown" else render_table(document)


def _sources(args: argparse.Namespace, config: Any) -> tuple[str, str]:
    block = config.coverage
    legacy = args.legacy_openapi or (block.legacy_openapi if block else None)
    new = args.new_openapi or (block.new_openapi if block else None)
    if not legacy or not new:
        missing = "--legacy-openapi" if not legacy else "--new-openapi"
        raise _UsageError(f"{missing} is needed (or coverage: in {args.config})")
    return legacy, new


def _status(url: str) -> dict[str, Any]:
    import asyncio
    import os

    from proxy.admin.client import TOKEN_ENV, AdminClient

    return asyncio.run(AdminClient(url, os.environ.get(TOKEN_ENV)).status())
