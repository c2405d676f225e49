"""One judge for the fleet, on the fleet's numbers: three `turnout serve` replicas share
one real redis-server, a real Prometheus (Debian's package) scrapes all three, and the
canary's `prometheus_url` points at it. A failing new is rolled back once for the
whole fleet: one replica (the lease holder) judges, on every replica's requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.fleet.test_fleet_replicas import Launch, Replica, _Traffic, launch
from tests.runtime.test_serve_process import free_port
from tests.support.backends import sample, scrape
from tests.support.prometheus import Prometheus, start_prometheus
from tests.support.redis_server import redis_server

__all__ = ["launch", "redis_server", "start_prometheus"]  # fixtures, used by name

FAILURES_TO_ROLLBACK = 2


def canary(prometheus: Prometheus) -> dict[str, Any]:
    return {
        "steps": [50, 100],
        "interval": "3s",
        "prometheus_lag": "1s",
        "min_requests": 20,
        "failures_to_rollback": FAILURES_TO_ROLLBACK,
        "max_inconclusive": 100,
        "prometheus_url": prometheus.url,
    }


async def flag_state(replica: Replica) -> dict[str, Any]:
    flag: dict[str, Any] = (await replica.status())["flags"][0]
    return flag


async def judgements(replica: Replica) -> dict[str, float]:
    """This replica's canary judgements of ``main`` by result (none: it never judged)."""
    text = await scrape(replica.admin)
    counts = {
        result: sample(text, "turnout_canary_judgements_total", flag="main", result=result)
        for result in ("pass", "fail", "inconclusive")
    }
    return {result: value for result, value in counts.items() if value}


async def test_a_failing_new_is_rolled_back_once_for_the_whole_fleet(
    launch: Launch, start_prometheus: Any
) -> None:
    admins = [free_port() for _ in range(3)]
    prometheus = await start_prometheus([f"127.0.0.1:{port}" for port in admins])
    flags = {"main": {"percent": 0, "canary": canary(prometheus)}}
    replicas = await launch(3, flags, admin_ports=admins, failing_new=True)

    async with _Traffic(replicas):
        deadline = time.monotonic() + 90
        while [(await flag_state(r))["canary"]["state"] for r in replicas] != ["rolled_back"] * 3:
            assert time.monotonic() < deadline, "the fleet did not roll back"
            await asyncio.sleep(0.2)

    for replica in replicas:
        flag = await flag_state(replica)
        assert flag["percent"] == 0
        assert flag["override"]["reason"] == "rollback"
        assert flag["canary"]["last"]["source"] == "prometheus"  # the fleet's numbers
    by_replica = {replica.name: await judgements(replica) for replica in replicas}
    judges = [name for name, counts in by_replica.items() if counts]
    assert len(judges) == 1, f"more than one replica judged: {by_replica}"
    assert by_replica[judges[0]].get("fail") == FAILURES_TO_ROLLBACK, by_replica
    assert "pass" not in by_replica[judges[0]]
