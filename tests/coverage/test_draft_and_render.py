"""`--write-routes` drafts and the table/Markdown renderings (pure)."""

from __future__ import annotations

import pytest
import yaml

from proxy.config.loader import parse_config
from proxy.config.models import Config
from proxy.coverage.draft import draft_routes, render_draft, route_pattern
from proxy.coverage.matching import CoverageMap, coverage_map
from proxy.coverage.operations import Document
from proxy.coverage.render import render_markdown, render_table
from proxy.coverage.report import live_requests, report_document


@pytest.fixture
def mapped(legacy: Document, new: Document, config: Config) -> CoverageMap:
    return coverage_map(legacy, new, config)


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("/users/{id}", "/users/*"),
        ("/users/{id}/avatar.{ext}", "/users/*/*"),
        ("/", "/"),
        ("/files/*", "/files/*"),
        ("/a/b", "/a/b"),
    ],
)
def test_route_pattern(path: str, pattern: str) -> None:
    assert route_pattern(path) == pattern


def test_the_draft_pins_what_new_lacks_and_routes_what_no_route_matches(
    mapped: CoverageMap, config: Config
) -> None:
    draft = draft_routes(mapped, config)
    assert draft.flags == {
        "pinned-legacy": {"percent": 0},
        "unrouted": {"percent": 0},
        "new-only": {"percent": 100},
    }
    assert draft.routes == [
        {"path": "/api/users/*", "methods": ["DELETE"], "flag": "pinned-legacy"},
        {"path": "/api/legacy-only/export", "methods": ["GET"], "flag": "pinned-legacy"},
        {"path": "/api/reports/*", "methods": ["GET"], "flag": "unrouted"},
        {"path": "/health", "methods": ["GET"], "flag": "unrouted"},
        {"path": "/api/users/*", "methods": ["PATCH"], "flag": "new-only"},
        {"path": "/api/v2/search", "methods": ["GET"], "flag": "new-only"},
    ]


def test_drafted_flag_names_do_not_clash_with_the_config(
    mapped: CoverageMap, config: Config
) -> None:
    data = config.model_dump()
    data["flags"]["pinned-legacy"] = {"percent": 50}
    draft = draft_routes(mapped, Config.model_validate(data))
    assert "pinned-legacy-2" in draft.flags
    assert {r["flag"] for r in draft.routes} == {"pinned-legacy-2", "unrouted", "new-only"}


def test_the_draft_merged_before_the_routes_validates_and_sends_what_new_lacks_to_legacy(
    mapped: CoverageMap, config: Config, legacy: Document, new: Document
) -> None:
    draft = yaml.safe_load(render_draft(draft_routes(mapped, config), mapped))
    data = config.model_dump(mode="json", exclude_none=True)
    data["flags"].update(draft["flags"])
    data["routes"] = draft["routes"] + data["routes"]
    merged = parse_config(yaml.safe_dump(data), "merged.yaml")
    remapped = coverage_map(legacy, new, merged)
    assert all(row.flag is not None for row in remapped.rows)
    missing = [row for row in remapped.rows if row.counterpart is None]
    assert {row.flag for row in missing} == {"pinned-legacy"}
    # nothing left to draft: a second run does not pin the pinned ones again
    again = draft_routes(remapped, merged)
    assert (again.flags, again.routes) == ({}, [])


def test_the_table_lists_every_operation_and_the_totals(
    mapped: CoverageMap, config: Config
) -> None:
    status = {
        "flags": [
            {"name": "user-api", "backends": {"legacy": {"requests": 30}, "new": {"requests": 10}}}
        ],
        "unmatched": {"requests": 60},
    }
    text = render_table(report_document(mapped, config, live=live_requests(status)))
    lines = text.splitlines()
    assert lines[0].startswith("legacy: ") and "OpenAPI 3.0.3, 9 operations" in lines[0]
    row = next(line for line in lines if "/api/users/{user_id}/orders" in line)
    assert row.split() == [
        "GET",
        "/api/users/{user_id}/orders/{order_id}",
        "yes,",
        "as",
        "/api/users/{id}/orders/{orderId}",
        "/api/users/*/orders/**",
        "orders",
        "0%",
        "shadow",
    ]
    assert any(line.split()[:3] == ["DELETE", "/api/users/{user_id}", "MISSING"] for line in lines)
    assert "Legacy operations served by new at 100%: 1 of 9 (11.11%)" in lines
    assert "Live requests answered by new: 10 of 100 (10%)" in lines


def test_markdown_has_a_table_per_section(mapped: CoverageMap, config: Config) -> None:
    text = render_markdown(report_document(mapped, config))
    assert text.startswith("# API coverage\n")
    for title in ("Legacy operations", "Only in new", "Per flag", "Per phase"):
        assert f"\n## {title}\n" in text
    assert "| PATCH | `/api/users/{id}` | unmatched | none |" in text
    assert "| GET | `/api/users/{user_id}` | yes, as `/api/users/{id}` |" in text
