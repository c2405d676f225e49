"""HS256 JWTs in the HTTP-only ``access_token`` cookie, verified with the standard library.

The new NestJS service verifies the same tokens with the same shared secret
(``EXAMPLE_JWT_SECRET``), so one login works on both sides of the migration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Cookie, Depends, HTTPException

DEFAULT_SECRET = "turnout-example-secret"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's ``sub``, ``tenant`` and ``role`` claims."""

    sub: str
    tenant: str | None
    role: str


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def decode_token(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of a valid HS256 token, or ``None`` (bad shape, signature or expiry)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return None
    if not hmac.compare_digest(signature, expected) or not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        return None
    return claims


def current_principal(
    access_token: Annotated[str | None, Cookie()] = None,
) -> Principal:
    secret = os.environ.get("EXAMPLE_JWT_SECRET", DEFAULT_SECRET)
    claims = decode_token(access_token, secret) if access_token else None
    if claims is None or not isinstance(claims.get("sub"), str):
        raise HTTPException(status_code=401, detail="Not authenticated")
    tenant = claims.get("tenant")
    return Principal(
        sub=claims["sub"],
        tenant=tenant if isinstance(tenant, str) else None,
        role=str(claims.get("role", "user")),
    )


User = Annotated[Principal, Depends(current_principal)]


def tenant_of(principal: User) -> str:
    if principal.tenant is None:
        raise HTTPException(status_code=403, detail="Token has no tenant")
    return principal.tenant


def platform_admin(principal: User) -> Principal:
    if principal.role != "admin":
        raise HTTPException(status_code=403, detail="Platform admins only")
    return principal


Tenant = Annotated[str, Depends(tenant_of)]
Admin = Annotated[Principal, Depends(platform_admin)]
