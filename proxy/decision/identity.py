"""Who is asking: the sticky key, the user and the tenant of a request.

Sources are tried in config order; the first present wins. JWTs are only
*read* for a claim (no signature check): the claim only picks a bucket, it
grants nothing, and the backends still authenticate the request themselves.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from proxy.config.models import StickySource

STICKY_COOKIE = "turnout-id"
TENANT_HEADER = "x-tenant-id"
TENANT_CLAIM = "tenant"

KeySource = Callable[[Mapping[str, str], str | None], str | None]


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    """One cookie's value from a Cookie header, without building a full cookie jar."""
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip('"') or None
    return None


def jwt_claim(token: str | None, claim: str) -> str | None:
    """A claim from a JWT's payload, or None for anything that is not a readable JWT."""
    if not token:
        return None
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    claims = jwt_claims(token)
    if claims is None:
        return None
    value = claims.get(claim)
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


@lru_cache(maxsize=4096)
def jwt_claims(token: str) -> Mapping[str, Any] | None:
    """A JWT's payload (read, not verified), or None. Cached: a request reads the same
    token for its sticky key, its user and its tenant, and a user sends the same token
    request after request. The payload is read-only to callers."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = orjson.loads(decoded)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _token(headers: Mapping[str, str], source: StickySource) -> str | None:
    name = source.name or ""
    if source.jwt_in == "cookie":
        return cookie_value(headers.get("cookie"), name)
    return headers.get(name)


def compile_key_source(source: StickySource) -> KeySource:
    """A function (headers, client address) -> key for one configured sticky source."""
    name = source.name or ""
    if source.kind == "header":
        return lambda headers, _remote: headers.get(name) or None
    if source.kind == "cookie":
        return lambda headers, _remote: cookie_value(headers.get("cookie"), name)
    if source.kind == "jwt_claim":
        claim = source.claim or "sub"
        return lambda headers, _remote: jwt_claim(_token(headers, source), claim)
    return lambda _headers, remote: remote


@dataclass(frozen=True, slots=True)
class IdentityReader:
    """Reads the sticky key, user and tenant of a request from the configured sources."""

    key_sources: tuple[KeySource, ...]
    user_sources: tuple[KeySource, ...]
    jwt_sources: tuple[StickySource, ...]
    use_sticky_cookie: bool

    @classmethod
    def from_config(cls, sources: Sequence[StickySource], sticky_cookie: bool) -> IdentityReader:
        compiled = tuple(compile_key_source(source) for source in sources)
        users = tuple(
            compile_key_source(source) for source in sources if source.kind != "client_ip"
        )
        jwts = tuple(source for source in sources if source.kind == "jwt_claim")
        return cls(compiled, users, jwts, sticky_cookie)

    def sticky_key(self, headers: Mapping[str, str], remote: str | None) -> str | None:
        """The bucketing key; the `turnout-id` cookie is tried after the configured sources."""
        for source in self.key_sources:
            key = source(headers, remote)
            if key:
                return key
        if self.use_sticky_cookie:
            return cookie_value(headers.get("cookie"), STICKY_COOKIE)
        return None

    def user(self, headers: Mapping[str, str]) -> str | None:
        """The user id for targeting: the first non-address sticky source present."""
        for source in self.user_sources:
            user = source(headers, None)
            if user:
                return user
        return None

    def tenant(self, headers: Mapping[str, str]) -> str | None:
        """The tenant for targeting: JWT claim `tenant`, else the `x-tenant-id` header."""
        for source in self.jwt_sources:
            tenant = jwt_claim(_token(headers, source), TENANT_CLAIM)
            if tenant:
                return tenant
        return headers.get(TENANT_HEADER) or None
