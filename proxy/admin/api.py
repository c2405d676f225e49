"""The admin listener (SPEC §8): reads, and the runtime changes operators make.

A separate aiohttp Application on its own port (loopback by default). Reads
come from a ``Control`` source: the local process with one worker, the
supervisor's merged view with several. Mutations are POST only, need
``Authorization: Bearer <token>`` (compared in constant time with the token
in the environment variable ``admin.token_env``), and are refused outright
when no token is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from aiohttp import web

from proxy.canary.machine import CanaryRefused
from proxy.config.values import parse_percent
from proxy.control.controller import RolledBack, UnknownFlag
from proxy.control.state import FlagOverride, StoreUnavailable, VersionConflict
from proxy.coverage.live import LiveCoverage
from proxy.decision.table import RoutingTable
from proxy.observe.prometheus import CONTENT_TYPE, ControlState, render
from proxy.observe.stats import Snapshot
from proxy.observe.status import RateWindow, status_document

_RATE_SAMPLE_SECONDS = 1.0


class Control(Protocol):
    """What the admin API reads and changes."""

    @property
    def table(self) -> RoutingTable[Any]: ...

    @property
    def rates(self) -> RateWindow: ...

    async def snapshot(self) -> Snapshot: ...

    def control_state(self) -> ControlState: ...

    def ready(self) -> bool: ...

    def overrides(self) -> dict[str, FlagOverride]: ...

    def canary_status(self) -> dict[str, dict[str, Any]]: ...

    async def mutate(
        self, action: str, flag: str | None, who: str, percent: float | None = None
    ) -> dict[str, object]: ...

    async def fleet_status(self) -> dict[str, Any] | None: ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2),
        status=status,
        content_type="application/json",
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status=status)


def no_token_message(token_env: str | None) -> str:
    """Why mutations are refused when no token is configured (also logged at start-up)."""
    where = (
        f"set {token_env} in the environment of turnout serve"
        if token_env
        else "admin.token_env is empty in the config"
    )
    return f"runtime changes are disabled: no admin token is configured ({where})"


def _refusal(request: web.Request, control: Control) -> web.Response | None:
    """None when the request carries the configured bearer token, else the refusal."""
    token_env = control.table.config.admin.token_env
    # Stripped: a token mounted from a file usually ends with a newline.
    token = os.environ.get(token_env, "").strip() if token_env else ""
    if not token:
        return _error(403, "no_admin_token", no_token_message(token_env))
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        return _error(401, "unauthorized", "missing or wrong bearer token")
    return None


def _read_routes(app: web.Application, control: Control, coverage: LiveCoverage) -> None:
    async def metrics(_: web.Request) -> web.Response:
        body = render(await control.snapshot(), control.control_state())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        if control.ready():
            return _json({"status": "ready"})
        return _json({"status": "not_ready"}, status=503)

    async def status(_: web.Request) -> web.Response:
        table = control.table
        document = status_document(
            table,
            await control.snapshot(),
            control.overrides(),
            control.rates.rates(),
            await coverage.view(table),
            control.canary_status(),
        )
        fleet = await control.fleet_status()
        if fleet is not None:
            document["fleet"] = fleet
        return _json(document)

    async def config(_: web.Request) -> web.Response:
        table = control.table
        return _json({"hash": table.config_hash, "config": table.config.model_dump(mode="json")})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/config", config)


def _mutation_routes(app: web.Application, control: Control) -> None:
    async def change(request: web.Request, action: str, flag: str | None) -> web.Response:
        refused = _refusal(request, control)
        if refused is not None:
            return refused
        percent = None
        if action == "percent":
            try:
                body = await request.json(loads=orjson.loads)
                percent = parse_percent(body["percent"])
                if not 0 <= percent <= 100:
                    raise ValueError(f"percent must be within 0..100, got {percent:g}")
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as error:
                return _error(400, "bad_percent", f'expected {{"percent": N}}: {error}')
        who = request.remote or "unknown"
        try:
            return _json(await control.mutate(action, flag, who, percent))
        except UnknownFlag:
            return _error(404, "unknown_flag", f"no flag named {flag!r}")
        except RolledBack as refused:
            return _error(409, "rolled_back", str(refused))
        except CanaryRefused as refused:
            return _error(409, "canary_refused", str(refused))
        except StoreUnavailable as down:
            return _error(503, "state_store_unavailable", str(down))
        except VersionConflict:
            message = "other replicas kept changing the state meanwhile: nothing changed, retry"
            return _error(409, "state_conflict", message)

    async def set_percent(request: web.Request) -> web.Response:
        return await change(request, "percent", request.match_info["name"])

    async def rollback(request: web.Request) -> web.Response:
        return await change(request, "rollback", request.match_info["name"])

    async def resume(request: web.Request) -> web.Response:
        return await change(request, "resume", request.match_info["name"])

    async def rollback_all(request: web.Request) -> web.Response:
        return await change(request, "rollback", None)

    async def promote(request: web.Request) -> web.Response:
        return await change(request, "promote", request.match_info["name"])

    app.router.add_post("/flags/{name}/percent", set_percent)
    app.router.add_post("/flags/{name}/rollback", rollback)
    app.router.add_post("/flags/{name}/resume", resume)
    app.router.add_post("/flags/{name}/promote", promote)
    app.router.add_post("/rollback", rollback_all)


def admin_app(control: Control) -> web.Application:
    app = web.Application()
    coverage = LiveCoverage()
    _read_routes(app, control, coverage)
    _mutation_routes(app, control)

    async def sample_rates(_: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                control.rates.add(await control.snapshot())
                coverage.refresh(control.table)  # start-up, and within a second of a reload
                await asyncio.sleep(_RATE_SAMPLE_SECONDS)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await coverage.aclose()

    app.cleanup_ctx.append(sample_rates)
    return app


async def start_admin(control: Control, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the admin listener; returns its runner and bound port."""
    runner = web.AppRunner(admin_app(control), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
