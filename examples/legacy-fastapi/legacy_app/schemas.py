"""Request and response models: FastAPI's 422 errors and the OpenAPI document come from here."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Product(BaseModel):
    id: str
    name: str
    category: str
    price_cents: int


class ProductPage(BaseModel):
    items: list[Product]
    page: int
    page_size: int
    total: int


class Category(BaseModel):
    slug: str
    name: str


class ServiceStatus(BaseModel):
    status: str
    server_time: datetime


class Profile(BaseModel):
    id: str
    email: str
    display_name: str
    tenant: str | None
    created_at: datetime


class ProfileUpdate(BaseModel):
    display_name: str = Field(min_length=1, max_length=50)


class Preferences(BaseModel):
    language: Literal["en", "fr", "de"]
    theme: Literal["light", "dark"]
    newsletter: bool


class OrderItemIn(BaseModel):
    product_id: str = Field(pattern=r"^p-\d{3}$")
    quantity: int = Field(ge=1, le=100)


class OrderIn(BaseModel):
    items: list[OrderItemIn] = Field(min_length=1, max_length=20)


class OrderItem(BaseModel):
    product_id: str
    quantity: int
    unit_price_cents: int


class Order(BaseModel):
    id: str
    status: str
    items: list[OrderItem]
    subtotal_cents: int
    tax_cents: int
    total_cents: int
    created_at: datetime


class OrderPage(BaseModel):
    items: list[Order]
    page: int
    page_size: int
    total: int


class AddressIn(BaseModel):
    label: str = Field(min_length=1, max_length=30)
    line1: str = Field(min_length=1, max_length=100)
    city: str = Field(min_length=1, max_length=60)
    postal_code: str = Field(min_length=1, max_length=12)
    country: str = Field(pattern=r"^[A-Z]{2}$")


class Address(AddressIn):
    id: str


class Invoice(BaseModel):
    id: str
    order_id: str
    amount_cents: int
    issued_at: datetime


class TenantInfo(BaseModel):
    id: str
    name: str
    plan: str
    created_at: datetime


class Member(BaseModel):
    id: str
    email: str
    name: str
    role: str
    joined_at: datetime


class MemberPage(BaseModel):
    items: list[Member]
    page: int
    page_size: int
    total: int


class MemberIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field(min_length=1, max_length=60)
    role: Literal["member", "admin"] = "member"


class Usage(BaseModel):
    tenant: str
    seats_used: int
    api_calls_30d: int


class PlatformStats(BaseModel):
    tenants: int
    users_seen: int
    orders: int


class AnnouncementIn(BaseModel):
    message: str = Field(min_length=1, max_length=280)


class Announcement(BaseModel):
    id: str
    message: str
    created_at: datetime
