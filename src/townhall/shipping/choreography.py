"""Shipping's part of the order saga in choreography mode (issue 21): no orchestrator sends
it commands. It keeps what each choreographed order ships from `orders.OrderPlaced`, books the
parcel once payments reports the money captured, and answers a buyer's cancel with a
definitive `ShipmentCancelled` (also when nothing was booked: then nothing ever will be).

Every handler decides by the order's record here (`shipping_orders`, written for every
`OrderPlaced` with its saga's mode): an orchestrated order is ignored; an order not heard of
yet (its `OrderPlaced` comes on another topic than `PaymentCaptured`) raises `NotYet`, so the
bus delivers the event again. Replies go through `ShippingService` (its inbox under the group
`shipping.choreography`; the order id is the carrier's idempotency key).
"""

from __future__ import annotations

from townhall.orders.events import OrderPlaced
from townhall.platform.messaging import Retry
from townhall.platform.transaction import Transactions
from townhall.shipping.events import Address, CancelShipment, CreateShipment, ShippedLine
from townhall.shipping.ports import (
    PlacedOrder,
    PlacedOrders,
    PlacedStatus,
    Received,
    ShipmentStore,
)
from townhall.shipping.service import ShippingService

CHOREOGRAPHY = "choreography"


class NotYet(Retry):
    """The event is early (the order is not heard of yet, or its shipment is being booked):
    raised so the bus delivers it again after `RETRY_AFTER` seconds."""


RETRY_AFTER = 1.0


def shipment_request(placed: OrderPlaced) -> CreateShipment:
    address = placed.shipping_address
    return CreateShipment(
        order_id=placed.order_id,
        address=Address(
            name=address.name,
            line1=address.line1,
            city=address.city,
            postal_code=address.postal_code,
            country=address.country,
            line2=address.line2,
        ),
        lines=tuple(ShippedLine(line.sku, line.quantity) for line in placed.lines),
    )


class ShippingChoreography:
    def __init__(
        self,
        transactions: Transactions,
        placed: PlacedOrders,
        shipments: ShipmentStore,
        service: ShippingService,
    ) -> None:
        self._tx = transactions
        self._placed = placed
        self._shipments = shipments
        self._service = service

    async def on_order_placed(self, placed: OrderPlaced) -> None:
        """Remember the order and its mode (and, choreographed, what to ship). Idempotent."""
        if placed.saga_mode == CHOREOGRAPHY:
            record = PlacedOrder(placed.order_id, PlacedStatus.PLACED, shipment_request(placed))
        else:
            record = PlacedOrder(placed.order_id, PlacedStatus.ORCHESTRATED, None)
        async with self._tx.transaction() as conn:
            await self._placed.add(conn, record)

    async def on_payment_captured(self, order_id: str, received: Received) -> None:
        """Book the parcel: `ShipmentCreated` or `ShipmentFailed`."""
        async with self._tx.transaction() as conn:
            known = await self._placed.get(conn, order_id)
            if known is None:
                raise NotYet(RETRY_AFTER, f"order {order_id} is not heard of yet")
            moving = (PlacedStatus.PLACED, PlacedStatus.CREATING)  # CREATING: after a crash
            if not await self._placed.move(conn, order_id, moving, PlacedStatus.CREATING):
                return  # orchestrated, cancelled, or booked already
        assert known.request is not None
        await self._service.create(known.request, received)
        async with self._tx.transaction() as conn:
            await self._placed.move(conn, order_id, (PlacedStatus.CREATING,), PlacedStatus.DONE)

    async def on_cancel_requested(self, order_id: str, received: Received) -> None:
        """The buyer cancels: nothing booked will ever be, a booked parcel is voided; the
        answer is `ShipmentCancelled` either way."""
        async with self._tx.transaction() as conn:
            known = await self._placed.get(conn, order_id)
            if known is None:
                raise NotYet(RETRY_AFTER, f"order {order_id} is not heard of yet")
            if known.status is PlacedStatus.ORCHESTRATED:
                return
            await self._placed.move(conn, order_id, (PlacedStatus.PLACED,), PlacedStatus.CANCELLED)
            known = await self._placed.get(conn, order_id)
            shipment = await self._shipments.get(conn, order_id)
        assert known is not None
        if known.status is PlacedStatus.CREATING:
            raise NotYet(RETRY_AFTER, f"order {order_id}: its shipment is being booked")
        shipment_id = (shipment.shipment_id if shipment else None) or ""
        await self._service.cancel(CancelShipment(order_id, shipment_id), received)
