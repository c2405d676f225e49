"""Route matching cost: the segment trie against trying one regex per route in turn.

    .venv/bin/python bench/routing.py [--routes 500]

Prints microseconds per match for both and the ratio. Pure CPU, no sockets.
"""

from __future__ import annotations

import argparse
import random
import re
import timeit

from proxy.decision.routing import RouteMatcher, RouteRule


def glob_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for segment in pattern[1:].split("/"):
        if segment == "**":
            parts.append("(?:/[^/]*)*")
        elif segment == "*":
            parts.append("/[^/]*")
        else:
            parts.append("/" + re.escape(segment))
    return re.compile("".join(parts) + r"\Z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routes", type=int, default=500)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    patterns = [f"/api/svc{i}/items/*" for i in range(args.routes)] + ["/api/**"]
    matcher = RouteMatcher([RouteRule(i, p, None, None, None) for i, p in enumerate(patterns)])
    regexes = [glob_regex(p) for p in patterns]
    rng = random.Random(7)
    # Distinct paths (user ids in the path) so the trie's small path cache does not help.
    paths = [f"/api/svc{rng.randrange(args.routes)}/items/{n}" for n in range(args.number)]

    def first_regex(path: str) -> int | None:
        return next((i for i, rx in enumerate(regexes) if rx.match(path)), None)

    for path in paths[:200]:
        assert matcher.match("GET", path, {}) == first_regex(path)
    paths_iter = iter(paths * 2)
    trie = timeit.timeit(lambda: matcher.match("GET", next(paths_iter), {}), number=args.number)
    paths_iter = iter(paths * 2)
    regex = timeit.timeit(lambda: first_regex(next(paths_iter)), number=args.number)
    per_trie, per_regex = trie / args.number * 1e6, regex / args.number * 1e6
    print(
        f"{args.routes + 1} routes: trie {per_trie:.2f} us/match, "
        f"regex in turn {per_regex:.2f} us/match, trie is {per_regex / per_trie:.0f}x faster"
    )


if __name__ == "__main__":
    main()
