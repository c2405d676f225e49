"""The dashboard and the alert rules as files: what Grafana and Prometheus need of them.

Parsing each query and running it against real traffic is test_prometheus.py's job;
here: ids, variables, data sources, rule fields, the runbook of every alert, and
that the schema check (make lint) really rejects a dashboard Grafana would not take.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from tests.dashboards.files import (
    OPERATIONS,
    SCHEMA_CHECK,
    alert_rules,
    annotation_queries,
    as_sent,
    dashboard,
    panel_queries,
    panels,
)
from tests.support.tools import unavailable

PROMETHEUS_SOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_panel_ids_are_unique() -> None:
    ids = Counter(panel["id"] for panel in panels(dashboard()))
    assert ids and all(count == 1 for count in ids.values()), ids


def test_the_data_source_is_a_variable_used_by_every_query() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("flag", "route"):
        assert variables[name]["datasource"] == PROMETHEUS_SOURCE
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == PROMETHEUS_SOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == PROMETHEUS_SOURCE, panel["title"]
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            assert annotation["datasource"] == PROMETHEUS_SOURCE, annotation["name"]


def test_every_query_uses_only_known_variables() -> None:
    board = dashboard()
    queries = [*panel_queries(board), *annotation_queries(board)]
    assert len(queries) > 20
    for _, expr in queries:
        as_sent(expr)


def test_the_dashboard_has_the_current_grafana_schema_version() -> None:
    # The version @grafana/schema (dashboards/schema-check/package.json) defaults to.
    assert dashboard()["schemaVersion"] == 42


def test_every_alert_has_a_duration_a_severity_and_a_runbook_section() -> None:
    rules = alert_rules()
    assert len(rules) >= 11
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook"] == f"docs/operations.md#{name.lower()}"
        assert name.lower() in anchors, f"docs/operations.md has no section {name}"


def _schema_check(tmp_path: Path, board: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """Wrap ``board`` as TypeScript in the schema check's folder and run tsc on it."""
    source = tmp_path / "dashboard.json"
    source.write_text(json.dumps(board))
    wrapped = SCHEMA_CHECK / "generated" / f"test-{os.getpid()}.ts"
    try:
        wrap = ["node", "wrap.mjs", str(source), str(wrapped)]
        subprocess.run(wrap, cwd=SCHEMA_CHECK, check=True)
        tsc = [
            "node_modules/.bin/tsc", "--noEmit", "--strict", "--skipLibCheck",
            "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022",
            str(wrapped),
        ]  # fmt: skip
        return subprocess.run(tsc, cwd=SCHEMA_CHECK, capture_output=True, text=True, timeout=120)
    finally:
        wrapped.unlink(missing_ok=True)


def test_the_schema_check_rejects_a_field_grafana_does_not_know(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (SCHEMA_CHECK / "node_modules/.bin/tsc").exists():
        unavailable("the schema check is not installed (make lint-dashboards installs it)")
    board = dashboard()
    assert _schema_check(tmp_path, board).returncode == 0
    broken = json.loads(json.dumps(board))
    panel = next(p for p in broken["panels"] if p["type"] == "timeseries")
    panel["gridPosition"] = panel.pop("gridPos")  # a typo Grafana would silently drop
    result = _schema_check(tmp_path, broken)
    assert result.returncode != 0
    assert "'\"gridPosition\"' does not exist" in result.stdout
