"""The pure matcher and report on the fixture documents (OpenAPI 3.0 JSON, 3.1 YAML).

Legacy (3.0, no ``servers``) writes ``/api`` in every path; new (3.1) puts it
in ``servers`` (through server variables), renames the path parameters, has a
path item behind a ``$ref``, lacks two legacy operations and adds two.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.models import Config
from proxy.coverage.matching import CoverageMap, coverage_map
from proxy.coverage.operations import (
    Document,
    DocumentError,
    Operation,
    base_path,
    read_document,
    template_key,
)
from proxy.coverage.report import FlagState, report_document, status_coverage


def ops(doc: Document) -> list[tuple[str, str]]:
    return [(op.method, op.path) for op in doc.operations]


def test_the_30_document_lists_its_operations_in_order(legacy: Document) -> None:
    assert legacy.version == "3.0.3"
    assert legacy.title == "Legacy API"
    assert ops(legacy) == [
        ("GET", "/api/users"),
        ("POST", "/api/users"),
        ("GET", "/api/users/{user_id}"),
        ("DELETE", "/api/users/{user_id}"),
        ("GET", "/api/users/{user_id}/orders/{order_id}"),
        ("GET", "/api/public/status"),
        ("GET", "/api/reports/{report_id}"),
        ("GET", "/api/legacy-only/export"),
        ("GET", "/health"),
    ]
    assert legacy.operations[0].operation_id == "list_users"


def test_the_31_document_joins_the_server_base_path_and_follows_a_path_item_ref(
    new: Document,
) -> None:
    assert new.version == "3.1.0"
    assert ops(new) == [
        ("GET", "/api/users"),
        ("POST", "/api/users"),
        ("GET", "/api/users/{id}"),
        ("PATCH", "/api/users/{id}"),
        ("GET", "/api/users/{id}/orders/{orderId}"),
        ("GET", "/api/public/status"),
        ("GET", "/api/reports/{id}"),
        ("GET", "/api/v2/search"),
        # the $ref'd path item carries its own `servers: [{url: /}]`: no /api
        ("GET", "/health"),
    ]


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        (None, ""),
        ([], ""),
        ([{"url": "/"}], ""),
        ([{"url": "/api/"}], "/api"),
        ([{"url": "https://api.example.com"}], ""),
        ([{"url": "https://api.example.com/v2/"}, {"url": "/other"}], "/v2"),
        ([{"url": "{base}", "variables": {"base": {"default": "/v3"}}}], "/v3"),
        ([{"url": "api"}], "/api"),
        (["not a server"], ""),
    ],
)
def test_base_path_of_servers(servers: Any, expected: str) -> None:
    assert base_path(servers) == expected


def test_parameter_names_do_not_matter_but_everything_else_does() -> None:
    assert template_key("/users/{user_id}/x") == template_key("/users/{id}/x")
    assert template_key("/users/{id}") != template_key("/users/{id}/")
    assert template_key("/files/{name}.{ext}") == "/files/{}.{}"
    same = Operation("GET", "/users/{a}")
    assert same.key == Operation("GET", "/users/{b}").key
    assert same.key != Operation("PUT", "/users/{b}").key


@pytest.fixture
def mapped(legacy: Document, new: Document, config: Config) -> CoverageMap:
    return coverage_map(legacy, new, config)


def test_renamed_parameters_match_and_the_missing_ones_are_exactly_what_new_lacks(
    mapped: CoverageMap,
) -> None:
    missing = [(r.operation.method, r.operation.path) for r in mapped.rows if not r.counterpart]
    assert missing == [("DELETE", "/api/users/{user_id}"), ("GET", "/api/legacy-only/export")]
    renamed = {r.operation.path: r.counterpart.path for r in mapped.rows if r.counterpart}
    assert renamed["/api/users/{user_id}/orders/{order_id}"] == "/api/users/{id}/orders/{orderId}"
    only_new = [(r.operation.method, r.operation.path) for r in mapped.only_in_new]
    assert only_new == [("PATCH", "/api/users/{id}"), ("GET", "/api/v2/search")]


def test_each_operation_gets_the_route_the_proxy_would_pick(mapped: CoverageMap) -> None:
    routes = {(r.operation.method, r.operation.path): (r.route, r.flag) for r in mapped.rows}
    assert routes[("GET", "/api/users/{user_id}")] == ("/api/users/**", "user-api")
    # the first route in file order wins, as in the proxy
    assert routes[("GET", "/api/users/{user_id}/orders/{order_id}")] == (
        "/api/users/*/orders/**",
        "orders",
    )
    # the users route lists GET and POST only
    assert routes[("DELETE", "/api/users/{user_id}")] == ("unmatched", None)
    assert routes[("GET", "/api/reports/{report_id}")] == ("unmatched", None)
    assert routes[("GET", "/api/public/status")] == ("/api/public/**", "public-api")


def test_a_route_that_needs_a_header_does_not_serve_an_operation(
    legacy: Document, new: Document, config: Config
) -> None:
    data = config.model_dump()
    data["routes"] = [{"path": "/**", "header": {"name": "x-beta"}, "flag": "user-api"}]
    mapped = coverage_map(legacy, new, Config.model_validate(data))
    assert {row.route for row in mapped.rows} == {"unmatched"}


def test_the_report_counts_per_flag_and_phase_with_the_config_percents(
    mapped: CoverageMap, config: Config
) -> None:
    report = report_document(mapped, config)
    flags = {f["flag"]: f for f in report["flags"]}
    assert flags["user-api"] == {
        "flag": "user-api",
        "operations": 3,
        "in_new": 3,
        "percent": 25.0,
        "phase": "canary",
    }
    assert (flags["orders"]["phase"], flags["public-api"]["phase"]) == ("shadow", "new")
    assert (flags["none"]["operations"], flags["none"]["in_new"]) == (4, 2)
    assert list(report["phases"]) == ["legacy", "shadow", "canary", "new"]
    assert report["phases"]["legacy"] == {"operations": 4, "in_new": 2}
    assert report["served_by_new_at_100"] == {"operations": 1, "of": 9, "share": 1 / 9}
    assert report["live_requests"] is None
    row = report["operations"][2]
    assert (row["path"], row["new_path"], row["in_new"]) == (
        "/api/users/{user_id}",
        "/api/users/{id}",
        True,
    )


def test_live_states_replace_the_config_percents(mapped: CoverageMap, config: Config) -> None:
    live = {"user-api": FlagState(100.0, "new"), "public-api": FlagState(0.0, "rolled_back")}
    report = report_document(mapped, config, live)
    # the three user-api operations are served now; public-api's one is not
    assert report["served_by_new_at_100"]["operations"] == 3
    assert {f["flag"]: f["phase"] for f in report["flags"]}["public-api"] == "rolled_back"


def test_status_coverage_per_flag_and_summary(mapped: CoverageMap) -> None:
    view = status_coverage(mapped, {"public-api": 100.0, "user-api": 25.0, "orders": 0.0})
    assert view["flags"]["user-api"] == {
        "legacy_operations": 3,
        "in_new": 3,
        "served_by_new": 0.25,
    }
    assert view["flags"]["public-api"]["served_by_new"] == 1.0
    assert view["flags"]["orders"]["served_by_new"] == 0.0
    summary = view
    assert (summary["unmatched_operations"], summary["missing_in_new"]) == (4, 2)
    assert summary["only_in_new"] == 2
    assert summary["served_by_new_at_100"]["operations"] == 1


def test_a_flag_without_operations_has_no_share(mapped: CoverageMap) -> None:
    view = status_coverage(mapped, {"idle": 50.0})
    assert view["flags"]["idle"] == {"legacy_operations": 0, "in_new": 0, "served_by_new": None}


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ({"/a": {"$ref": "other.yaml#/x"}}, "only local $ref"),
        ({"/a": {"$ref": "#/components/pathItems/nope"}}, "points at nothing"),
        ({"/a": {"$ref": "#/paths/~1a"}}, "$ref cycle"),
        ({"/a": ["not", "an", "item"]}, "must be a mapping"),
        (["not", "paths"], "'paths' is not a mapping"),
    ],
)
def test_odd_documents_give_a_document_error(paths: Any, message: str) -> None:
    with pytest.raises(DocumentError, match=message.replace("$", r"\$")):
        read_document("x", {"openapi": "3.1.0", "paths": paths})
