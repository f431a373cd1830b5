"""Orders' HTTP routes: a buyer places an order (once per `Idempotency-Key`), reads it, its
events and its saga's timeline, cancels it, and lists their orders; administrators see every
order, the sales per day and the sagas that need a person."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from townhall.orders.domain import Order
from townhall.orders.ports import SagaFilter, SummaryKey
from townhall.orders.queries import OrderViews
from townhall.orders.schemas import (
    AcceptedOut,
    EventsOut,
    FromDay,
    Limit,
    OrderIn,
    OrderOut,
    SagaCursor,
    SagaPageOut,
    SalesOut,
    SummaryCursor,
    SummaryPageOut,
    TimelineOut,
    ToDay,
    daily_sales_out,
    encode_saga_cursor,
    encode_summary_cursor,
    event_out,
    order_out,
    saga_key,
    saga_out,
    summary_key,
    summary_out,
    timeline_entry_out,
)
from townhall.orders.service import Orchestrator, OrderDesk, OrderNotFound, OrderRequest
from townhall.platform import errors
from townhall.platform.auth import Principal
from townhall.platform.http import Problem, current_admin, current_user, rate_limit, require_json

MAX_SALES_DAYS = 366

# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # FastAPI hashes a dependency: by identity here
class _Installed:
    """This installation's use cases, put on each request by the router's dependency."""

    desk: OrderDesk
    orchestrator: Orchestrator
    views: OrderViews

    async def __call__(self, request: Request) -> None:
        request.state.orders = self


async def _installed(request: Request) -> _Installed:
    installed: _Installed = request.state.orders
    return installed


Orders = Annotated[_Installed, Depends(_installed)]
User = Annotated[Principal, Depends(current_user)]
Admin = Annotated[Principal, Depends(current_admin)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


async def _visible(orders: _Installed, order_id: str, user: Principal) -> Order:
    """The order now (from its events), if `user` is its buyer or an administrator; else 404,
    as for an order that does not exist."""
    try:
        parsed = uuid.UUID(order_id)
    except ValueError:
        raise OrderNotFound(order_id) from None
    order = await orders.orchestrator.order(parsed)
    if order.buyer_id != user.user_id and not user.is_admin:
        raise OrderNotFound(order_id)
    return order


# --- routes ---------------------------------------------------------------------------------


async def place_order(
    body: OrderIn, orders: Orders, user: User, idempotency_key: IdempotencyKey = None
) -> AcceptedOut:
    """Accept an order at the server's prices; its saga runs behind the answer. The same
    `Idempotency-Key` with the same body answers the same order; with another body, 422."""
    if not idempotency_key:
        raise Problem(
            400,
            "missing-idempotency-key",
            "Idempotency-Key required",
            "send an Idempotency-Key header to place an order",
            errors=[{"field": "Idempotency-Key", "message": "required"}],
        )
    request = OrderRequest(
        [(item.sku, item.quantity) for item in body.items],
        body.shipping_address.to_address(),
        body.payment.card,
    )
    order = await orders.desk.place(user.user_id, idempotency_key, body.fingerprint(), request)
    return AcceptedOut(id=str(order.id), status=order.status.value)


async def read_order(
    order_id: str, orders: Orders, user: User, as_of: datetime | None = None
) -> OrderOut:
    """The order now, or as it was at `as_of` (replayed from its events): for its buyer and
    administrators; 404 for anyone else. Read from the order's events, never from a read
    model, so it shows the buyer's own writes at once (right after the 202)."""
    current = await _visible(orders, order_id, user)
    if as_of is None:
        return order_out(current)
    return order_out(await orders.orchestrator.order(current.id, as_of=as_of))


async def order_events(order_id: str, orders: Orders, user: User) -> EventsOut:
    """The order's own events, oldest first: type, version, time and data."""
    order = await _visible(orders, order_id, user)
    return EventsOut(items=[event_out(e) for e in await orders.orchestrator.history(order.id)])


async def order_timeline(order_id: str, orders: Orders, user: User) -> TimelineOut:
    """Every message of the order's saga, each after the message that caused it."""
    order = await _visible(orders, order_id, user)
    entries = await orders.views.timeline(str(order.id))
    return TimelineOut(items=[timeline_entry_out(entry) for entry in entries])


async def cancel_order(order_id: str, orders: Orders, user: User) -> AcceptedOut:
    """Ask to cancel: 202 when accepted (the saga refunds and releases what it holds, and the
    order ends CANCELLED) or already asked; 409 naming why when the shipment is under way or
    exists, or the order is final."""
    order = await _visible(orders, order_id, user)
    after = await orders.desk.cancel(order)
    return AcceptedOut(id=str(after.id), status=after.status.value)


async def my_orders(
    orders: Orders, user: User, cursor: SummaryCursor = None, limit: Limit = 20
) -> SummaryPageOut:
    """The caller's orders, newest first, from the `orders.summaries` read model (it follows
    the orders' events within moments). Pass `next_cursor` back as `cursor`."""
    after = summary_key(cursor) if cursor is not None else None
    page = await orders.views.orders_of(user.user_id, after, limit)
    last = page[-1] if len(page) == limit else None
    return SummaryPageOut(
        items=[summary_out(summary) for summary in page],
        next_cursor=(
            encode_summary_cursor(SummaryKey(last.created_at, last.order_id))
            if last is not None
            else None
        ),
    )


async def sales(orders: Orders, _admin: Admin, first: FromDay, last: ToDay) -> SalesOut:
    """Confirmed sales per product per day (UTC) from `from` to `to`, both included, from the
    `orders.sales` read model. At most 366 days."""
    if first > last:
        raise errors.Invalid("from is after to", field="from")
    if (last - first).days >= MAX_SALES_DAYS:
        raise errors.Invalid(f"at most {MAX_SALES_DAYS} days at once", field="to")
    rows = await orders.views.sales(first, last)
    return SalesOut(from_=first, to=last, items=[daily_sales_out(row) for row in rows])


async def list_sagas(
    orders: Orders,
    _admin: Admin,
    status: Annotated[SagaFilter, Query()],
    cursor: SagaCursor = None,
    limit: Limit = 20,
) -> SagaPageOut:
    """Sagas by status, newest first: `running` (not ended), `failed` (ended FAILED) or
    `stuck` (still waiting on a command, while running or for a late compensation after its
    end, and its deadline passed over a minute ago or that command was sent 3 times or more)."""
    after = saga_key(cursor) if cursor is not None else None
    page = await orders.views.sagas(status, after, limit)
    return SagaPageOut(
        items=[saga_out(saga) for saga in page],
        next_cursor=encode_saga_cursor(page[-1].order_id) if len(page) == limit else None,
    )


def routers(desk: OrderDesk, orchestrator: Orchestrator, views: OrderViews) -> list[APIRouter]:
    api = APIRouter(
        tags=["orders"],
        dependencies=[
            Depends(_Installed(desk, orchestrator, views)),
            rate_limit("default"),
            require_json,
        ],
    )
    api.add_api_route(
        "/orders",
        place_order,
        methods=["POST"],
        status_code=202,
        response_model=AcceptedOut,
        responses={400: {"description": "No Idempotency-Key header"}},
    )
    api.add_api_route("/orders/{order_id}", read_order, methods=["GET"], response_model=OrderOut)
    api.add_api_route(
        "/orders/{order_id}/events", order_events, methods=["GET"], response_model=EventsOut
    )
    api.add_api_route(
        "/orders/{order_id}/timeline", order_timeline, methods=["GET"], response_model=TimelineOut
    )
    api.add_api_route(
        "/orders/{order_id}/cancel",
        cancel_order,
        methods=["POST"],
        status_code=202,
        response_model=AcceptedOut,
        responses={409: {"description": "The order can no longer be cancelled"}},
    )
    api.add_api_route("/me/orders", my_orders, methods=["GET"], response_model=SummaryPageOut)
    api.add_api_route("/admin/sales", sales, methods=["GET"], response_model=SalesOut)
    api.add_api_route("/admin/sagas", list_sagas, methods=["GET"], response_model=SagaPageOut)
    return [api]
