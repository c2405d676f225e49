"""The canary's exchange tap: each request of a canary flag into the flag's window.

What counts, per request, on the side the request **started** on:

- a 5xx the client saw is an error of the side that served it;
- a fallback (``exchange.fell_back``) is an error of the side it left, whatever
  the other side then answered, and is kept out of the latency histogram (its
  time is two attempts);
- a request the client gave up on counts as a request, not an error; its time
  so far is a lower bound of the real one and goes into the histogram.

Latency is the time to the response head for a stream, as in the Prometheus
histogram, over the same buckets.
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter
from typing import TYPE_CHECKING

from proxy.canary.window import IntervalNumbers
from proxy.exchange.hooks import EndTap
from proxy.observe.stats import DURATION_BOUNDS

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange
    from proxy.exchange.hooks import Outcome


class CanaryTap(EndTap):
    """Counts every request of one flag into the flag's current window.

    One instance serves every request of its flag (``open`` returns it), so the
    hot path allocates nothing for the canary.
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current = IntervalNumbers()

    def take(self) -> IntervalNumbers:
        """The numbers so far; counting goes on in a fresh window."""
        taken, self.current = self.current, IntervalNumbers()
        return taken

    # -- TapFactory ------------------------------------------------------------
    def open(self, exchange: Exchange) -> CanaryTap:
        return self

    # -- ExchangeTap: only the end matters -------------------------------------
    def finished(self, exchange: Exchange, outcome: Outcome, status: int) -> None:
        backend = exchange.backend
        if exchange.fell_back:
            side = self.current.sides[1 - backend]
            side.requests += 1
            side.errors += 1
            return
        side = self.current.sides[backend]
        side.requests += 1
        if status >= 500:
            side.errors += 1
        seconds = (exchange.streamed_at or perf_counter()) - exchange.started
        side.buckets[bisect_left(DURATION_BOUNDS, seconds)] += 1
