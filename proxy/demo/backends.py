"""Two built-in sample backends for ``turnout demo``.

``legacy`` imitates a FastAPI service and ``new`` its NestJS rewrite. Both are
served by the same handlers; everything that differs between them (version,
timestamp format, error status and body, item order, latency, error rate) is
data in a :class:`BackendProfile`. The differences are the kind a real
migration shows, so that the proxy's shadow comparison has something to find.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from aiohttp import web

Side = Literal["legacy", "new"]
SIDES: tuple[Side, Side] = ("legacy", "new")
SERVED_BY_HEADER = "x-served-by"
DEFAULT_ORDERS_ERROR_RATE = 0.005

_EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
_ITEMS: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "keyboard", "price": 49.9},
    {"id": 2, "name": "mouse", "price": 19.5},
    {"id": 3, "name": "monitor", "price": 189.0},
    {"id": 4, "name": "cable", "price": 4.2},
    {"id": 5, "name": "headset", "price": 59.0},
)


def _python_iso(ts: datetime) -> str:
    """``datetime.isoformat()``, what FastAPI/pydantic emits: ``...T10:30:00+00:00``."""
    return ts.isoformat()


def _js_iso(ts: datetime) -> str:
    """``Date.prototype.toISOString()``, what NestJS emits: ``...T10:30:00.000Z``."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _fastapi_error(status: int, message: str) -> dict[str, Any]:
    return {"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]}


def _nest_error(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "message": [message], "error": "Bad Request"}


@dataclass(frozen=True)
class BackendProfile:
    """Everything that distinguishes one sample backend from the other."""

    side: Side
    version: str
    framework: str
    format_timestamp: Callable[[datetime], str]
    invalid_status: int
    error_body: Callable[[int, str], dict[str, Any]]
    user_extra: dict[str, Any]
    items_sort_key: Callable[[dict[str, Any]], Any]
    orders_delay: tuple[float, float]  # extra seconds on /api/orders, uniform in [lo, hi]
    orders_error_rate: float  # share of /api/orders answered with 500


PROFILES: dict[Side, BackendProfile] = {
    "legacy": BackendProfile(
        side="legacy",
        version="1.14.2",
        framework="fastapi",
        format_timestamp=_python_iso,
        invalid_status=422,
        error_body=_fastapi_error,
        user_extra={},
        items_sort_key=lambda item: item["id"],
        orders_delay=(0.0, 0.0),
        orders_error_rate=0.0,
    ),
    "new": BackendProfile(
        side="new",
        version="2.0.0-rc.3",
        framework="nestjs",
        format_timestamp=_js_iso,
        invalid_status=400,
        error_body=_nest_error,
        user_extra={"locale": "en-US"},
        items_sort_key=lambda item: item["name"],
        orders_delay=(0.002, 0.005),
        orders_error_rate=DEFAULT_ORDERS_ERROR_RATE,
    ),
}


@dataclass
class _State:
    profile: BackendProfile
    rng: random.Random
    ids: Iterator[int]


_STATE = web.AppKey("turnout_demo_state", _State)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _state(request: web.Request) -> _State:
    return request.app[_STATE]


def _invalid(state: _State, message: str) -> web.Response:
    status = state.profile.invalid_status
    return _json(state.profile.error_body(status, message), status=status)


def _path_id(request: web.Request) -> int | None:
    raw = request.match_info["id"]
    return int(raw) if raw.isdigit() else None


async def _health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _info(request: web.Request) -> web.Response:
    profile = _state(request).profile
    return _json(
        {"service": "accounts-api", "version": profile.version, "framework": profile.framework}
    )


def user_record(user_id: int, profile: BackendProfile) -> dict[str, Any]:
    """The user ``user_id`` as ``profile``'s side renders it (deterministic)."""
    created = _EPOCH + timedelta(hours=user_id * 7, minutes=user_id % 60)
    record: dict[str, Any] = {
        "id": user_id,
        "name": f"User {user_id}",
        "email": f"user{user_id}@example.test",
        "created_at": profile.format_timestamp(created),
    }
    return record | profile.user_extra


async def _get_user(request: web.Request) -> web.Response:
    state = _state(request)
    user_id = _path_id(request)
    if user_id is None:
        return _invalid(state, "id must be an integer")
    return _json(user_record(user_id, state.profile))


async def _create_user(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _invalid(state, "body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return _invalid(state, "body must be an object with a string 'name'")
    return _json({**body, "id": next(state.ids)}, status=201)


async def _items(request: web.Request) -> web.Response:
    profile = _state(request).profile
    items = sorted(_ITEMS, key=profile.items_sort_key)
    return _json({"items": items, "count": len(items)})


async def _get_order(request: web.Request) -> web.Response:
    state = _state(request)
    order_id = _path_id(request)
    if order_id is None:
        return _invalid(state, "id must be an integer")
    low, high = state.profile.orders_delay
    if high > 0:
        await asyncio.sleep(state.rng.uniform(low, high))
    if state.rng.random() < state.profile.orders_error_rate:
        return _json({"error": "internal error"}, status=500)
    return _json({"id": order_id, "user_id": order_id % 200 + 1, "total": 42.5, "currency": "EUR"})


async def _mark_served_by(request: web.Request, response: web.StreamResponse) -> None:
    """Tag every response, 404s and exceptions included, with the side that answered."""
    response.headers[SERVED_BY_HEADER] = request.app[_STATE].profile.side


def make_backend_app(
    side: Side, *, orders_error_rate: float | None = None, seed: int = 0
) -> web.Application:
    """Build the sample backend ``side``.

    ``orders_error_rate`` overrides the profile's share of 500s on ``/api/orders``;
    ``seed`` seeds the RNG behind latency and errors so that runs are repeatable.
    """
    profile = PROFILES[side]
    if orders_error_rate is not None:
        if not 0.0 <= orders_error_rate <= 1.0:
            raise ValueError(f"orders_error_rate must be within [0, 1], got {orders_error_rate}")
        profile = replace(profile, orders_error_rate=orders_error_rate)
    app = web.Application()
    app[_STATE] = _State(profile, random.Random(seed), itertools.count(1001))
    app.on_response_prepare.append(_mark_served_by)
    app.router.add_get("/health", _health)
    app.router.add_get("/api/public/info", _info)
    app.router.add_get("/api/users/{id}", _get_user)
    app.router.add_post("/api/users", _create_user)
    app.router.add_get("/api/items", _items)
    app.router.add_get("/api/orders/{id}", _get_order)
    return app


async def start_backend(
    side: Side,
    host: str,
    port: int,
    *,
    orders_error_rate: float | None = None,
    seed: int = 0,
) -> web.AppRunner:
    """Start backend ``side`` on ``host:port`` (0 picks a free port, see ``runner.addresses``).

    The caller owns the runner and must ``await runner.cleanup()``.
    """
    app = make_backend_app(side, orders_error_rate=orders_error_rate, seed=seed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
