"""Shipping's part of the order saga in choreography mode (issue 21): no orchestrator sends
it commands. It keeps what each choreographed order ships from `orders.OrderPlaced`, books the
parcel once payments reports the money captured, and answers a buyer's cancel with a
definitive `ShipmentCancelled` (also when nothing was booked: then nothing ever will be).

Every handler decides by the order's record here (`shipping_orders`, written for every
`OrderPlaced` with its saga's mode): an orchestrated order is ignored. Events of one order come
on two topics, so either may come first, however late: a `PaymentCaptured` for an order not
heard of yet is kept (status `paid`, with its message) and the parcel is booked when the
`OrderPlaced` comes; a cancel for an order not heard of yet is answered at once and keeps it
from ever being booked. Nothing waits on the bus's retries for the other topic to catch up.
Replies go through `ShippingService` (its inbox under the group `shipping.choreography`; the
order id is the carrier's idempotency key).
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
    """A cancel met a shipment being booked: raised so the bus delivers it again after
    `RETRY_AFTER` seconds, once the carrier has answered."""


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

    async def on_order_placed(self, placed: OrderPlaced, received: Received) -> None:
        """Remember the order and its mode (and, choreographed, what to ship); book the parcel
        now if its payment came first. Idempotent."""
        if placed.saga_mode != CHOREOGRAPHY:
            async with self._tx.transaction() as conn:
                await self._placed.add(
                    conn, PlacedOrder(placed.order_id, PlacedStatus.ORCHESTRATED, None)
                )
            return
        request = shipment_request(placed)
        async with self._tx.transaction() as conn:
            if await self._placed.add(
                conn, PlacedOrder(placed.order_id, PlacedStatus.PLACED, request)
            ):
                return  # the usual order of things: the payment comes next
            await self._placed.fill(conn, placed.order_id, request)
            known = await self._placed.get(conn, placed.order_id)
        if known is None or known.paid_by is None or known.status is not PlacedStatus.CREATING:
            return  # a repeat, or the parcel's answer is in already
        # Booked in the payment's name (the reply is caused by it), on this delivery's attempts.
        paid_by = Received(
            known.paid_by.message_id, known.paid_by.correlation_id, received.final_attempt
        )
        await self._book(placed.order_id, request, paid_by)

    async def on_payment_captured(self, order_id: str, received: Received) -> None:
        """Book the parcel: `ShipmentCreated` or `ShipmentFailed`; if the order is not heard of
        yet, keep the payment and book when it is."""
        async with self._tx.transaction() as conn:
            known = await self._placed.get(conn, order_id)
            if known is None:
                early = PlacedOrder(order_id, PlacedStatus.PAID, None, paid_by=received)
                if await self._placed.add(conn, early):
                    return
                known = await self._placed.get(conn, order_id)  # the order came meanwhile
            moving = (PlacedStatus.PLACED, PlacedStatus.CREATING)  # CREATING: after a crash
            if not await self._placed.move(conn, order_id, moving, PlacedStatus.CREATING):
                return  # orchestrated, cancelled, paid already, or booked already
        assert known is not None and known.request is not None
        await self._book(order_id, known.request, received)

    async def _book(self, order_id: str, request: CreateShipment, received: Received) -> None:
        await self._service.create(request, received)
        async with self._tx.transaction() as conn:
            await self._placed.move(conn, order_id, (PlacedStatus.CREATING,), PlacedStatus.DONE)

    async def on_cancel_requested(self, order_id: str, received: Received) -> None:
        """The buyer cancels: nothing booked will ever be, a booked parcel is voided; the
        answer is `ShipmentCancelled` either way."""
        async with self._tx.transaction() as conn:
            known = await self._placed.get(conn, order_id)
            if known is None:  # before the order: it will never be booked
                await self._placed.add(conn, PlacedOrder(order_id, PlacedStatus.CANCELLED, None))
                known = await self._placed.get(conn, order_id)
            assert known is not None
            if known.status is PlacedStatus.ORCHESTRATED:
                return
            waiting = (PlacedStatus.PLACED, PlacedStatus.PAID)
            await self._placed.move(conn, order_id, waiting, PlacedStatus.CANCELLED)
            known = await self._placed.get(conn, order_id)
            shipment = await self._shipments.get(conn, order_id)
        assert known is not None
        if known.status is PlacedStatus.CREATING:
            raise NotYet(RETRY_AFTER, f"order {order_id}: its shipment is being booked")
        shipment_id = (shipment.shipment_id if shipment else None) or ""
        await self._service.cancel(CancelShipment(order_id, shipment_id), received)
