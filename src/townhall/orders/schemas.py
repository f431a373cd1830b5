"""What orders' HTTP routes take and give. The rules of an order's fields are the domain's
(`InvalidOrder` naming the field); these models hold the types and the lengths."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from townhall.orders.domain import Address, Order


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: StrictInt


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(min_length=2, max_length=2)

    def to_address(self) -> Address:
        return Address(self.name, self.line1, self.city, self.postal_code, self.country, self.line2)


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card: str = Field(min_length=1, max_length=64)


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(max_length=50)
    shipping_address: AddressIn
    payment: PaymentIn

    def fingerprint(self) -> str:
        """Equal for equal requests: what an idempotency key is held to."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class AcceptedOut(BaseModel):
    id: str
    status: str


class LineOut(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int


class OrderOut(BaseModel):
    id: str
    status: str
    reason: str | None = None
    decline_code: str | None = None
    items: list[LineOut]
    total_cents: int
    currency: str
    created_at: datetime
    updated_at: datetime
    version: int


def order_out(order: Order) -> OrderOut:
    return OrderOut(
        id=str(order.id),
        status=order.status.value,
        reason=order.reason.value if order.reason is not None else None,
        decline_code=order.decline_code,
        items=[
            LineOut(sku=x.sku, quantity=x.quantity, unit_price_cents=x.unit_price_cents)
            for x in order.lines
        ],
        total_cents=order.total_cents,
        currency=order.currency,
        created_at=order.created_at,
        updated_at=order.updated_at,
        version=order.version,
    )
