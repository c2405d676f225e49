"""The shadow's JSON differ on a realistic answer: a page of 50 items, one field changed.

    .venv/bin/python bench/diff.py [--items 50]

Prints microseconds per comparison (``proxy.shadow.diff.diff_json`` with two
ignore patterns, as a shadowed route would have). Pure CPU, no sockets.
"""

from __future__ import annotations

import argparse
import copy
import timeit
from typing import Any

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


if __name__ == "__main__":
    main()
