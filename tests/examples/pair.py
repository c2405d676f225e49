"""What tests need to talk to the example pair: tokens, test ids, the documented differences.

The differences are listed in examples/README.md; shadow comparison and
coverage tests assert on them, so they live here in one place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import aiohttp

DEV_SECRET = "turnout-example-secret"  # both services' default EXAMPLE_JWT_SECRET
TEST_ID_HEADER = "x-test-id"

# Operations of the legacy API that the NestJS rewrite has not ported yet.
MISSING_ON_NEW = frozenset(
    {
        ("GET", "/api/account/invoices"),
        ("POST", "/api/account/addresses"),
        ("DELETE", "/api/tenants/current/members/{member_id}"),
        ("GET", "/api/tenants/current/usage"),
        ("GET", "/api/platform/stats"),
    }
)
LEGACY_OPERATIONS = 23
TAX_PERCENT = 20  # legacy: total = subtotal + tax; new (the bug): total = subtotal


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(
    sub: str, tenant: str | None = None, role: str = "user", secret: str = DEV_SECRET
) -> str:
    """An HS256 JWT both services accept, with ``sub``, ``tenant`` and ``role`` claims."""
    claims: dict[str, Any] = {"sub": sub, "role": role}
    if tenant is not None:
        claims["tenant"] = tenant
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def auth(sub: str, tenant: str | None = None, role: str = "user") -> dict[str, str]:
    """Request headers: the token in the ``access_token`` cookie, as a browser sends it."""
    return {"cookie": f"access_token={mint_token(sub, tenant, role)}"}


def new_test_id() -> str:
    return uuid.uuid4().hex


async def received(session: aiohttp.ClientSession, base_url: str, test_id: str) -> list[str]:
    """``["METHOD path", ...]`` the service at ``base_url`` received with this test id."""
    async with session.get(f"{base_url}/_test/received", params={"test_id": test_id}) as response:
        assert response.status == 200, await response.text()
        data = await response.json()
    return [f"{r['method']} {r['path']}" for r in data["requests"]]
