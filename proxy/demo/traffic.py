"""Seeded, rate-paced HTTP traffic for ``turnout demo``.

One :class:`aiohttp.ClientSession` with a bounded connector sends requests from
simulated users (``x-user-id: user-N``) at a fixed rate. Requests are started
on a schedule (one slot every ``1/rate`` s); when the target is too slow to
keep up, the number of requests in flight is capped and missed slots are
skipped rather than burst later, so the generator never floods the proxy.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from proxy.demo.summary import Sample

log = structlog.get_logger()

BACKEND_HEADER = "x-turnout-backend"
MAX_RATE = 5000.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
QA_TENANT = "internal-qa"

# (weight, method, path template, endpoint label); "{id}" is filled per request.
_MIX: tuple[tuple[int, str, str, str], ...] = (
    (15, "GET", "/api/public/info", "GET /api/public/info"),
    (30, "GET", "/api/users/{id}", "GET /api/users/{id}"),
    (15, "GET", "/api/items", "GET /api/items"),
    (25, "GET", "/api/orders/{id}", "GET /api/orders/{id}"),
    (12, "POST", "/api/users", "POST /api/users"),
    (3, "POST", "/api/users", "POST /api/users (invalid)"),
)
_WEIGHTS = [entry[0] for entry in _MIX]


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    method: str
    path: str
    endpoint: str
    headers: dict[str, str]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    base_url: str  # e.g. http://127.0.0.1:18080; must be a loopback address
    users: int = 200
    rate: float = 200.0  # requests per second
    duration: float | None = None  # seconds; None runs until the stop event is set
    seed: int = 0
    connection_limit: int = 64  # also the cap on requests in flight
    request_timeout: float = 5.0
    qa_users: int = 5  # user-1..user-N also send x-tenant-id: internal-qa

    def __post_init__(self) -> None:
        host = urlsplit(self.base_url).hostname
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"traffic only targets loopback addresses, not {self.base_url!r}")
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be within (0, {MAX_RATE:g}], got {self.rate}")
        if self.users < 1 or self.connection_limit < 1:
            raise ValueError("users and connection_limit must be at least 1")
        if self.duration is not None and self.duration < 0:
            raise ValueError("duration must not be negative")


def plan_request(rng: random.Random, config: TrafficConfig) -> PlannedRequest:
    """Draw the next request: a user, an endpoint from the mix, and its body."""
    user = rng.randint(1, config.users)
    headers = {"x-user-id": f"user-{user}"}
    if user <= config.qa_users:
        headers["x-tenant-id"] = QA_TENANT
    _, method, template, endpoint = rng.choices(_MIX, weights=_WEIGHTS)[0]
    path = template.replace("{id}", str(rng.randint(1, 1000)))
    body: bytes | None = None
    if method == "POST":
        headers["content-type"] = "application/json"
        if endpoint.endswith("(invalid)"):
            body = b'{"name": "broken'
        else:
            body = orjson.dumps({"name": f"User {user}", "email": f"u{user}@example.test"})
    return PlannedRequest(method, path, endpoint, headers, body)


def backend_of(header_value: str | None) -> str:
    """Map the proxy's ``x-turnout-backend`` header value to legacy, new or missing."""
    return header_value if header_value in ("legacy", "new") else "missing"


class TrafficGenerator:
    """Sends paced requests to ``config.base_url`` and records a :class:`Sample` each.

    ``samples`` grows in completion order while :meth:`run` is active; readers
    on the same event loop may slice it at any time.
    """

    def __init__(self, config: TrafficConfig, stop: asyncio.Event | None = None) -> None:
        self.config = config
        self.stop = stop or asyncio.Event()
        self.samples: list[Sample] = []
        self.skipped_slots = 0
        self._rng = random.Random(config.seed)
        self._started = 0.0

    async def run(self) -> list[Sample]:
        """Run until the stop event is set or the duration ends; return the samples."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        deadline = None
        if self.config.duration is not None:
            deadline = loop.call_later(self.config.duration, self.stop.set)
        connector = aiohttp.TCPConnector(limit=self.config.connection_limit)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await self._schedule(session)
        finally:
            if deadline is not None:
                deadline.cancel()
        log.info("demo.traffic_stopped", requests=len(self.samples), skipped=self.skipped_slots)
        return self.samples

    async def _schedule(self, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.config.rate
        in_flight = asyncio.Semaphore(self.config.connection_limit)
        tasks: set[asyncio.Task[None]] = set()
        next_at = loop.time()
        try:
            while not self.stop.is_set():
                lag = loop.time() - next_at
                if lag < 0 and await self._stopped_within(-lag):
                    break
                if lag > interval:  # fell behind: drop the missed slots, do not burst
                    missed = int(lag / interval)
                    self.skipped_slots += missed
                    next_at += missed * interval
                await in_flight.acquire()
                request = plan_request(self._rng, self.config)
                task = asyncio.create_task(self._send(session, request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: in_flight.release())
                next_at += interval
        finally:
            # Every request is bounded by the client timeout, so this ends.
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _stopped_within(self, delay: float) -> bool:
        """Wait up to ``delay`` s for the stop event; True when it was set."""
        try:
            async with asyncio.timeout(delay):
                await self.stop.wait()
        except TimeoutError:
            return False
        return True

    async def _send(self, session: aiohttp.ClientSession, req: PlannedRequest) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        status: int | None = None
        backend = "missing"
        try:
            async with session.request(
                req.method, self.config.base_url + req.path, headers=req.headers, data=req.body
            ) as resp:
                await resp.read()
                status, backend = resp.status, backend_of(resp.headers.get(BACKEND_HEADER))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("demo.request_failed", endpoint=req.endpoint, error=repr(exc))
        done = loop.time()
        sample = Sample(done - self._started, req.endpoint, backend, status, done - sent)
        self.samples.append(sample)
