"""A canary interval's numbers read from Prometheus (``canary.prometheus_url``): the
whole fleet's, summed over every replica Prometheus scrapes.

The four queries of ``proxy.canary.promql`` go to ``/api/v1/query`` together,
evaluated at the interval's end (``time=``), over the interval's length. The
runner asks only once ``prometheus_lag`` has passed since that end, so the
replicas' last scrapes of the interval are stored.

Anything short of four good answers (no connection, a timeout, a status other
than 200, ``status: error``, a body that is not the expected JSON, a bucket
layout that is not Turnout's) raises ``PrometheusUnavailable``: the runner
makes the interval inconclusive with that reason. It is never a pass.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from proxy.canary.promql import (
    PromAnswerError,
    Row,
    interval_numbers,
    queries,
    shadow_numbers,
    vector,
)
from proxy.canary.window import IntervalNumbers, ShadowNumbers

MAX_TIMEOUT = 5.0
"""Seconds for the four queries together, at most (less for a shorter interval)."""
_MIN_TIMEOUT = 0.5


class PrometheusUnavailable(Exception):
    """Prometheus gave no usable numbers for an interval; the message says why."""


def query_timeout(interval: float) -> float:
    """A few seconds, never more than half the interval (the next one is due)."""
    return max(_MIN_TIMEOUT, min(MAX_TIMEOUT, interval / 2))


class PrometheusSource:
    """Reads intervals' numbers from Prometheus over one shared HTTP session.

    The session is opened on first use (inside the event loop) and closed by
    ``close()``; every ``prometheus_url`` of every flag shares it.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def numbers(
        self, url: str, flag: str, interval: float, end: float
    ) -> tuple[IntervalNumbers, ShadowNumbers | None]:
        """``flag``'s numbers over the ``interval`` seconds up to ``end`` (Unix time)."""
        asked = queries(flag, interval).as_dict()
        try:
            async with asyncio.timeout(query_timeout(interval)):
                # every query ends (or is cancelled) here: none outlives a failed sibling
                answers = await asyncio.gather(
                    *(self._query(url, expr, end) for expr in asked.values()),
                    return_exceptions=True,
                )
        except TimeoutError:
            raise PrometheusUnavailable(
                f"no answer from {url} within {query_timeout(interval):g}s"
            ) from None
        rows: dict[str, list[Row]] = {}
        for name, found in zip(asked, answers, strict=True):
            if isinstance(found, aiohttp.ClientError):
                raise PrometheusUnavailable(f"{url}: {found or type(found).__name__}")
            if isinstance(found, BaseException):
                raise found
            rows[name] = found
        try:
            numbers = interval_numbers(rows["requests"], rows["buckets"], rows["fallbacks"])
        except PromAnswerError as error:
            raise PrometheusUnavailable(str(error)) from None
        return numbers, shadow_numbers(rows["shadow"])

    async def _query(self, url: str, expr: str, end: float) -> list[Row]:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession()
        params = {"query": expr, "time": f"{end:.3f}"}
        async with session.get(f"{url}/api/v1/query", params=params) as response:
            body = await response.read()
            answer = _json(body)
            if response.status != 200:
                error = answer.get("error") if isinstance(answer, dict) else None
                detail = error or body[:200].decode("utf-8", "replace")
                raise PrometheusUnavailable(f"{url} answered {response.status}: {detail}")
        try:
            return vector(answer)
        except PromAnswerError as error:
            raise PrometheusUnavailable(f"{url}: {error}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
