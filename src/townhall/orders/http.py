"""Orders' HTTP routes: a buyer places an order (once per `Idempotency-Key`) and reads it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from townhall.orders.schemas import AcceptedOut, OrderIn, OrderOut, order_out
from townhall.orders.service import Orchestrator, OrderDesk, OrderNotFound, OrderRequest
from townhall.platform.auth import Principal
from townhall.platform.http import Problem, current_user, rate_limit, require_json

# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # FastAPI hashes a dependency: by identity here
class _Installed:
    """This installation's use cases, put on each request by the router's dependency."""

    desk: OrderDesk
    orchestrator: Orchestrator

    async def __call__(self, request: Request) -> None:
        request.state.orders = self


async def _installed(request: Request) -> _Installed:
    installed: _Installed = request.state.orders
    return installed


Orders = Annotated[_Installed, Depends(_installed)]
User = Annotated[Principal, Depends(current_user)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


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
    administrators; 404 for anyone else."""
    try:
        parsed = uuid.UUID(order_id)
    except ValueError:
        raise OrderNotFound(order_id) from None
    current = await orders.orchestrator.order(parsed)
    if current.buyer_id != user.user_id and not user.is_admin:
        raise OrderNotFound(order_id)
    order = current if as_of is None else await orders.orchestrator.order(parsed, as_of=as_of)
    return order_out(order)


def routers(desk: OrderDesk, orchestrator: Orchestrator) -> list[APIRouter]:
    api = APIRouter(
        tags=["orders"],
        dependencies=[Depends(_Installed(desk, orchestrator)), rate_limit("default"), require_json],
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
    return [api]
