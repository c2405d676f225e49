"""The legacy FastAPI application: ``uvicorn legacy_app.main:app``.

``/health`` answers liveness, ``/openapi.json`` is FastAPI's own document.
With ``EXAMPLE_TEST_HOOKS=1`` the service also records every request that
carries an ``x-test-id`` header and lists them at ``GET /_test/received``:
tests use it to prove which side a request reached, and how many times.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from legacy_app.routes import ROUTERS
from legacy_app.store import Store

TEST_ID_HEADER = "x-test-id"
MAX_RECORDED = 10_000


def create_app() -> FastAPI:
    app = FastAPI(title="Shop API (legacy, FastAPI)", version="1.4.0")
    app.state.store = Store()
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    if os.environ.get("EXAMPLE_TEST_HOOKS") == "1":
        _install_test_hooks(app)
    return app


def _install_test_hooks(app: FastAPI) -> None:
    received: deque[dict[str, str]] = deque(maxlen=MAX_RECORDED)

    @app.middleware("http")
    async def record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        test_id = request.headers.get(TEST_ID_HEADER)
        if test_id is not None:
            path = request.url.path
            received.append({"method": request.method, "path": path, "test_id": test_id})
        return await call_next(request)

    @app.get("/_test/received", include_in_schema=False)
    def list_received(test_id: str | None = None) -> dict[str, Any]:
        items = [r for r in received if test_id is None or r["test_id"] == test_id]
        return {"count": len(items), "requests": items}


app = create_app()
