"""The five tiers of the API: public, user, account, tenant, platform."""

from __future__ import annotations

import zlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from legacy_app.auth import Admin, Tenant, User
from legacy_app.schemas import (
    Address,
    AddressIn,
    Announcement,
    AnnouncementIn,
    Category,
    Invoice,
    Member,
    MemberIn,
    MemberPage,
    Order,
    OrderIn,
    OrderPage,
    PlatformStats,
    Preferences,
    Product,
    ProductPage,
    Profile,
    ProfileUpdate,
    ServiceStatus,
    TenantInfo,
    Usage,
)
from legacy_app.store import (
    CATEGORIES,
    PRODUCTS,
    PRODUCTS_BY_ID,
    TENANTS,
    Store,
    now,
    paginate,
    price_order,
    tenant_info,
)

Page = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1, le=100)]

public = APIRouter(prefix="/api/public", tags=["public"])
user = APIRouter(prefix="/api/users", tags=["user"])
account = APIRouter(prefix="/api/account", tags=["account"])
tenant = APIRouter(prefix="/api/tenants", tags=["tenant"])
platform = APIRouter(prefix="/api/platform", tags=["platform"])


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@public.get("/products", response_model=ProductPage)
def list_products(page: Page = 1, page_size: PageSize = 20, category: str | None = None) -> Any:
    items = [p for p in PRODUCTS if category is None or p["category"] == category]
    return paginate(items, page, page_size)


@public.get("/products/{product_id}", response_model=Product)
def get_product(product_id: str) -> Any:
    if product_id not in PRODUCTS_BY_ID:
        raise HTTPException(status_code=404, detail="Product not found")
    return PRODUCTS_BY_ID[product_id]


@public.get("/categories", response_model=list[Category])
def list_categories() -> Any:
    return CATEGORIES


@public.get("/status", response_model=ServiceStatus)
def service_status() -> Any:
    return {"status": "ok", "server_time": now()}


@user.get("/me", response_model=Profile)
def get_me(principal: User, request: Request) -> Any:
    return store_of(request).profile(principal.sub, principal.tenant)


@user.patch("/me", response_model=Profile)
def update_me(body: ProfileUpdate, principal: User, request: Request) -> Any:
    profile = store_of(request).profile(principal.sub, principal.tenant)
    profile["display_name"] = body.display_name
    return profile


@user.get("/me/preferences", response_model=Preferences)
def get_preferences(principal: User, request: Request) -> Any:
    return store_of(request).prefs(principal.sub)


@user.put("/me/preferences", response_model=Preferences)
def put_preferences(body: Preferences, principal: User, request: Request) -> Any:
    prefs = store_of(request).prefs(principal.sub)
    prefs.update(body.model_dump())
    return prefs


@account.get("/orders", response_model=OrderPage)
def list_orders(principal: User, request: Request, page: Page = 1, page_size: PageSize = 20) -> Any:
    orders = store_of(request).orders.get(principal.sub, [])
    return paginate(list(reversed(orders)), page, page_size)


@account.post("/orders", response_model=Order, status_code=201)
def create_order(body: OrderIn, principal: User, request: Request) -> Any:
    store = store_of(request)
    items = [i.model_dump() for i in body.items]
    for item in items:
        if item["product_id"] not in PRODUCTS_BY_ID:
            raise HTTPException(status_code=404, detail=f"Product {item['product_id']} not found")
        item["unit_price_cents"] = PRODUCTS_BY_ID[item["product_id"]]["price_cents"]
    order = {
        "id": store.ids.new_id(),
        "status": "placed",
        "items": items,
        **price_order(items),
        "created_at": now(),
    }
    store.orders.setdefault(principal.sub, []).append(order)
    return order


def _find_order(store: Store, sub: str, order_id: str) -> dict[str, Any]:
    for order in store.orders.get(sub, []):
        if order["id"] == order_id:
            return order
    raise HTTPException(status_code=404, detail="Order not found")


@account.get("/orders/{order_id}", response_model=Order)
def get_order(order_id: str, principal: User, request: Request) -> Any:
    return _find_order(store_of(request), principal.sub, order_id)


@account.delete("/orders/{order_id}", status_code=204)
def cancel_order(order_id: str, principal: User, request: Request) -> Response:
    store = store_of(request)
    store.orders[principal.sub].remove(_find_order(store, principal.sub, order_id))
    return Response(status_code=204)


@account.get("/invoices", response_model=list[Invoice])
def list_invoices(principal: User, request: Request) -> Any:
    return [
        {
            "id": f"inv-{order['id'][:8]}",
            "order_id": order["id"],
            "amount_cents": order["total_cents"],
            "issued_at": order["created_at"],
        }
        for order in store_of(request).orders.get(principal.sub, [])
    ]


@account.get("/addresses", response_model=list[Address])
def list_addresses(principal: User, request: Request) -> Any:
    return store_of(request).user_addresses(principal.sub)


@account.post("/addresses", response_model=Address, status_code=201)
def add_address(body: AddressIn, principal: User, request: Request) -> Any:
    store = store_of(request)
    address = {"id": store.ids.new_id(), **body.model_dump()}
    store.user_addresses(principal.sub).append(address)
    return address


@tenant.get("/current", response_model=TenantInfo)
def current_tenant(tenant_id: Tenant) -> Any:
    return tenant_info(tenant_id)


@tenant.get("/current/members", response_model=MemberPage)
def list_members(
    tenant_id: Tenant, request: Request, page: Page = 1, page_size: PageSize = 20
) -> Any:
    members = sorted(store_of(request).tenant_members(tenant_id), key=lambda m: m["joined_at"])
    return paginate(members, page, page_size)


@tenant.post("/current/members", response_model=Member, status_code=201)
def invite_member(body: MemberIn, tenant_id: Tenant, request: Request) -> Any:
    store = store_of(request)
    member = {"id": store.ids.new_id(), **body.model_dump(), "joined_at": now()}
    store.tenant_members(tenant_id).append(member)
    return member


@tenant.delete("/current/members/{member_id}", status_code=204)
def remove_member(member_id: str, tenant_id: Tenant, request: Request) -> Response:
    members = store_of(request).tenant_members(tenant_id)
    for member in members:
        if member["id"] == member_id:
            members.remove(member)
            return Response(status_code=204)
    raise HTTPException(status_code=404, detail="Member not found")


@tenant.get("/current/usage", response_model=Usage)
def tenant_usage(tenant_id: Tenant, request: Request) -> Any:
    return {
        "tenant": tenant_id,
        "seats_used": len(store_of(request).tenant_members(tenant_id)),
        "api_calls_30d": zlib.crc32(tenant_id.encode()) % 100_000,
    }


@platform.get("/tenants", response_model=list[TenantInfo])
def all_tenants(_admin: Admin) -> Any:
    return [tenant_info(t) for t in TENANTS]


@platform.get("/stats", response_model=PlatformStats)
def platform_stats(_admin: Admin, request: Request) -> Any:
    store = store_of(request)
    return {
        "tenants": len(TENANTS),
        "users_seen": len(store.profiles),
        "orders": sum(len(o) for o in store.orders.values()),
    }


@platform.post("/announcements", response_model=Announcement, status_code=201)
def announce(body: AnnouncementIn, _admin: Admin, request: Request) -> Any:
    store = store_of(request)
    announcement = {"id": store.ids.new_id(), "message": body.message, "created_at": now()}
    store.announcements.append(announcement)
    return announcement


ROUTERS = (public, user, account, tenant, platform)
