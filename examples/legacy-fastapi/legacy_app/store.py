"""In-memory data: fixed catalogue and tenants, per-user state, seedable ids.

Ids and timestamps are the volatile fields a shadow comparison must learn to
ignore. With ``EXAMPLE_SEED`` set, ids come from a seeded generator, so a run
is repeatable; timestamps are always the real clock.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TAX_PERCENT = 20

PRODUCTS: list[dict[str, Any]] = [
    {"id": f"p-{n:03d}", "name": name, "category": category, "price_cents": price}
    for n, (name, category, price) in enumerate(
        [
            ("Field Notes", "books", 1250),
            ("Graph Paper Pad", "books", 600),
            ("The Strangler Fig", "books", 3900),
            ("Go Board", "games", 8900),
            ("Deck of Cards", "games", 450),
            ("Chess Clock", "games", 5400),
            ("Screwdriver Set", "tools", 2999),
            ("Tape Measure", "tools", 1199),
            ("Spirit Level", "tools", 1799),
            ("Bench Vise", "tools", 6450),
            ("Puzzle Cube", "games", 999),
            ("Refactoring Handbook", "books", 4500),
        ],
        start=1,
    )
]
PRODUCTS_BY_ID = {p["id"]: p for p in PRODUCTS}
CATEGORIES = [
    {"slug": "books", "name": "Books"},
    {"slug": "games", "name": "Games"},
    {"slug": "tools", "name": "Tools"},
]
TENANTS: dict[str, dict[str, Any]] = {
    "acme": {"id": "acme", "name": "Acme Corp", "plan": "enterprise"},
    "acme-beta": {"id": "acme-beta", "name": "Acme Beta Programme", "plan": "enterprise"},
    "globex": {"id": "globex", "name": "Globex", "plan": "pro"},
    "initech": {"id": "initech", "name": "Initech", "plan": "free"},
}
FIXED_CREATED_AT = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
# (id suffix, name, role, joined): the legacy lists members by join date.
SEED_MEMBERS = [
    ("m1", "Zoe Adams", "owner", datetime(2024, 1, 5, 8, 0, tzinfo=UTC)),
    ("m2", "Bob Brown", "admin", datetime(2024, 3, 10, 14, 15, tzinfo=UTC)),
    ("m3", "Mia Chen", "member", datetime(2024, 6, 21, 11, 45, tzinfo=UTC)),
]


def now() -> datetime:
    return datetime.now(UTC)


class IdSource:
    """uuid4 ids; reproducible when ``EXAMPLE_SEED`` is set."""

    def __init__(self, seed: str | None) -> None:
        self._rng = random.Random(seed) if seed is not None else None

    def new_id(self) -> str:
        if self._rng is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def tenant_info(tenant: str) -> dict[str, Any]:
    known = TENANTS.get(tenant)
    base = known or {"id": tenant, "name": tenant.replace("-", " ").title(), "plan": "free"}
    return {**base, "created_at": FIXED_CREATED_AT}


def seed_members(tenant: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{tenant}-{suffix}",
            "email": f"{name.split()[0].lower()}@{tenant}.example",
            "name": name,
            "role": role,
            "joined_at": joined,
        }
        for suffix, name, role, joined in SEED_MEMBERS
    ]


def price_order(items: list[dict[str, Any]]) -> dict[str, int]:
    """Subtotal, tax (20 %, rounded half up to the cent) and total, in cents."""
    subtotal = sum(PRODUCTS_BY_ID[i["product_id"]]["price_cents"] * i["quantity"] for i in items)
    tax = (subtotal * TAX_PERCENT + 50) // 100
    return {"subtotal_cents": subtotal, "tax_cents": tax, "total_cents": subtotal + tax}


@dataclass
class Store:
    ids: IdSource = field(default_factory=lambda: IdSource(os.environ.get("EXAMPLE_SEED")))
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    preferences: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    addresses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    members: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    announcements: list[dict[str, Any]] = field(default_factory=list)

    def profile(self, sub: str, tenant: str | None) -> dict[str, Any]:
        if sub not in self.profiles:
            self.profiles[sub] = {
                "id": sub,
                "email": f"{sub}@example.com",
                "display_name": sub.replace("-", " ").title(),
                "tenant": tenant,
                "created_at": FIXED_CREATED_AT,
            }
        return self.profiles[sub]

    def prefs(self, sub: str) -> dict[str, Any]:
        return self.preferences.setdefault(
            sub, {"language": "en", "theme": "light", "newsletter": False}
        )

    def user_addresses(self, sub: str) -> list[dict[str, Any]]:
        return self.addresses.setdefault(
            sub,
            [
                {
                    "id": f"{sub}-home",
                    "label": "home",
                    "line1": "1 Migration Way",
                    "city": "Lyon",
                    "postal_code": "69001",
                    "country": "FR",
                }
            ],
        )

    def tenant_members(self, tenant: str) -> list[dict[str, Any]]:
        return self.members.setdefault(tenant, seed_members(tenant))


def paginate(items: list[Any], page: int, page_size: int) -> dict[str, Any]:
    start = (page - 1) * page_size
    return {
        "items": items[start : start + page_size],
        "page": page,
        "page_size": page_size,
        "total": len(items),
    }
