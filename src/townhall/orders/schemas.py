"""What orders' HTTP routes take and give. The rules of an order's fields are the domain's
(`InvalidOrder` naming the field); these models hold the types and the lengths."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from townhall.orders.domain import Address, Order
from townhall.orders.ports import (
    DailySales,
    OrderSummary,
    SagaOverview,
    StoredOrderEvent,
    SummaryKey,
    TimelineEntry,
)


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
    """An order as its events left it (`GET /orders/{id}`), or as the read model holds it."""

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


# --- the read side ----------------------------------------------------------------------------

_NOT_A_CURSOR = "not a cursor: pass back the next_cursor of a page"
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(_NOT_A_CURSOR) from None


def encode_summary_cursor(key: SummaryKey) -> str:
    return _b64(f"{key.created_at.isoformat()}|{key.order_id}")


def summary_key(value: str) -> SummaryKey:
    """The position a `next_cursor` of a buyer's orders names: its last order's time and id."""
    at, _, order_id = _unb64(value).partition("|")
    try:
        key = SummaryKey(datetime.fromisoformat(at), str(uuid.UUID(order_id)))
    except ValueError:
        raise ValueError(_NOT_A_CURSOR) from None
    if key.created_at.tzinfo is None or encode_summary_cursor(key) != value:
        raise ValueError(_NOT_A_CURSOR)
    return key


def _summary_cursor(value: str | None) -> str | None:
    if value is not None:
        summary_key(value)
    return value


def encode_saga_cursor(order_id: str) -> str:
    return _b64(order_id)


def saga_key(value: str) -> str:
    """The order id a `next_cursor` of sagas names: its last saga's."""
    try:
        order_id = str(uuid.UUID(_unb64(value)))
    except ValueError:
        raise ValueError(_NOT_A_CURSOR) from None
    if encode_saga_cursor(order_id) != value:
        raise ValueError(_NOT_A_CURSOR)
    return order_id


def _saga_cursor(value: str | None) -> str | None:
    if value is not None:
        saga_key(value)
    return value


def _day(value: object) -> object:
    """A day is exactly YYYY-MM-DD (not a timestamp, not a week date)."""
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("a day is YYYY-MM-DD")
    return date.fromisoformat(value)  # a ValueError for a day that does not exist


_CURSOR_QUERY = Query(max_length=200, description="the next_cursor of the previous page")
SummaryCursor = Annotated[str | None, _CURSOR_QUERY, AfterValidator(_summary_cursor)]
SagaCursor = Annotated[str | None, _CURSOR_QUERY, AfterValidator(_saga_cursor)]
Limit = Annotated[int, Query(ge=1, le=100)]
FromDay = Annotated[
    date, Query(alias="from", description="first day, YYYY-MM-DD (UTC)"), BeforeValidator(_day)
]
ToDay = Annotated[
    date, Query(alias="to", description="last day, YYYY-MM-DD (UTC)"), BeforeValidator(_day)
]


class SummaryPageOut(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


def summary_out(summary: OrderSummary) -> OrderOut:
    return OrderOut(
        id=summary.order_id,
        status=summary.status,
        reason=summary.reason,
        decline_code=summary.decline_code,
        items=[
            LineOut(sku=x.sku, quantity=x.quantity, unit_price_cents=x.unit_price_cents)
            for x in summary.items
        ],
        total_cents=summary.total_cents,
        currency=summary.currency,
        created_at=summary.created_at,
        updated_at=summary.updated_at,
        version=summary.version,
    )


class EventOut(BaseModel):
    type: str
    version: int
    time: datetime = Field(description="when it happened (the event's own time)")
    recorded_at: datetime
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]


class EventsOut(BaseModel):
    items: list[EventOut]


def event_out(stored: StoredOrderEvent) -> EventOut:
    return EventOut(
        type=stored.event.type,
        version=stored.version,
        time=stored.event.at,
        recorded_at=stored.recorded_at,
        correlation_id=stored.correlation_id,
        causation_id=stored.causation_id,
        data=stored.event.to_data(),
    )


class TimelineEntryOut(BaseModel):
    time: datetime
    module: str
    message_type: str
    message_id: str
    correlation_id: str | None
    causation_id: str | None
    outcome: str
    detail: str | None


class TimelineOut(BaseModel):
    items: list[TimelineEntryOut]


def timeline_entry_out(entry: TimelineEntry) -> TimelineEntryOut:
    return TimelineEntryOut(
        time=entry.at,
        module=entry.module,
        message_type=entry.message_type,
        message_id=entry.message_id,
        correlation_id=entry.correlation_id,
        causation_id=entry.causation_id,
        outcome=entry.outcome,
        detail=entry.detail,
    )


class DailySalesOut(BaseModel):
    day: date
    sku: str
    currency: str
    quantity: int
    revenue_cents: int
    orders: int


class SalesOut(BaseModel):
    from_: date = Field(serialization_alias="from")
    to: date
    items: list[DailySalesOut]


def daily_sales_out(row: DailySales) -> DailySalesOut:
    return DailySalesOut(
        day=row.day,
        sku=row.sku,
        currency=row.currency,
        quantity=row.quantity,
        revenue_cents=row.revenue_cents,
        orders=row.orders,
    )


class SagaOut(BaseModel):
    order_id: str
    mode: str = Field(description="the saga mode the order runs in: orchestration or choreography")
    phase: str
    status: str | None = Field(description="the order's end once decided; null while running")
    deadline: datetime | None
    attempt: int | None
    created_at: datetime
    updated_at: datetime


class SagaPageOut(BaseModel):
    items: list[SagaOut]
    next_cursor: str | None


def saga_out(saga: SagaOverview) -> SagaOut:
    return SagaOut(
        order_id=saga.order_id,
        mode=saga.mode,
        phase=saga.phase,
        status=saga.status,
        deadline=saga.deadline,
        attempt=saga.attempt,
        created_at=saga.created_at,
        updated_at=saga.updated_at,
    )
