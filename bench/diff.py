"""The shadow's JSON differ on a realistic answer: a page of 50 items, one field changed.

    .venv/bin/python bench/diff.py [--items 50]

Prints microseconds per comparison (``proxy.shadow.diff.diff_json`` with two
ignore patterns, as a shadowed route would have), and for a whole comparison
(``proxy.shadow.compare.compare``, bodies parsed from bytes) of two pages that
differ only in ignored fields: the match fast path of ``proxy.shadow.prune``.
Pure CPU, no sockets.
"""

from __future__ import annotations

import argparse
import copy
import timeit
from typing import Any

import orjson

from proxy.config.flags import Compare
from proxy.shadow.compare import CompareRules, Observed, compare
from proxy.shadow.diff import DiffRules, diff_json, ignore_patterns


def page(items: int) -> dict[str, Any]:
    rows = [
        {
            "id": i,
            "name": f"item {i}",
            "price": i * 1.5,
            "tags": ["a", "b"],
            "stock": {"warehouse": i, "ok": True},
            "created_at": "2026-01-01T00:00:00Z",
            "owner": None,
        }
        for i in range(items)
    ]
    return {"items": rows, "page": 1, "total": items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50)
    args = parser.parse_args()
    legacy = page(args.items)
    new = copy.deepcopy(legacy)
    new["items"][args.items // 3]["price"] = 0.0
    rules = DiffRules(ignore=ignore_patterns(["body.items[*].created_at", "body.trace_id"]))
    found = diff_json(legacy, new, rules)
    assert [d.path for d in found] == [f"body.items[{args.items // 3}].price"], found
    runs = 2000
    seconds = timeit.timeit(lambda: diff_json(legacy, new, rules), number=runs) / runs
    print(f"{seconds * 1e6:.1f} us per comparison of a {args.items}-item page (1 field differs)")
    print(f"{_match_seconds(args.items) * 1e6:.1f} us per whole comparison of two such pages "
          "that differ only in ignored fields (parsing included)")  # fmt: skip


def _match_seconds(items: int) -> float:
    ignore = ["body.items[*].created_at", "body.trace_id"]
    rules = CompareRules.from_config(Compare(ignore=ignore))
    legacy, new = page(items), page(items)
    for row in new["items"]:
        row["created_at"] = "2026-01-01T00:00:00.123+00:00"
    answers = [Observed(200, {"content-type": "application/json"}, orjson.dumps(body))
               for body in (legacy, new)]  # fmt: skip
    assert compare(*answers, rules) == []
    runs = 2000
    return timeit.timeit(lambda: compare(*answers, rules), number=runs) / runs


if __name__ == "__main__":
    main()
