"""The files under dashboards/ as data: panels, their PromQL, the alert rules."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "turnout.json"
ALERTS = ROOT / "dashboards" / "alerts.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
SCHEMA_CHECK = ROOT / "dashboards" / "schema-check"

# What Grafana substitutes before a query reaches Prometheus, for a query sent by hand.
GRAFANA_VARIABLES = {
    "$__rate_interval": "15s",
    "$__interval": "5s",
    "$flag": ".*",
    "$route": ".*",
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' own included, with panels nested in collapsed rows."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", ())


def panel_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every panel target."""
    for panel in panels(board):
        for target in panel.get("targets", ()):
            yield panel["title"], target["expr"]


def annotation_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            yield annotation["name"], annotation["target"]["expr"]


def as_sent(expr: str) -> str:
    """The query as Grafana sends it with every flag and route selected."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert not re.search(r"\$\w", expr), f"unknown dashboard variable in {expr!r}"
    return expr
