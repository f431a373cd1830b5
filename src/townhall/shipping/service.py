"""`ShippingService`: the shipment step of the order saga and its compensation, and the
dispatch of a confirmed order's parcel. It asks the carrier, then records the shipment and
publishes the answer in one transaction.

No transaction is held open while the carrier is asked. The order id is the carrier's
idempotency key (an order has at most one shipment), so two racing deliveries of one command
book one parcel; the order's row and the inbox keep them to one answer each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from townhall.platform.messaging import Retry
from townhall.platform.transaction import Transactions
from townhall.shipping.domain import (
    CARRIER_UNAVAILABLE,
    UNKNOWN_SHIPMENT,
    Address,
    Booked,
    Cancelled,
    Dispatched,
    ParcelItem,
    Refused,
    Shipment,
    ShipmentStatus,
    Transient,
)
from townhall.shipping.events import (
    CancelShipment,
    CreateShipment,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentFailed,
)
from townhall.shipping.ports import (
    Carrier,
    HandledCommands,
    Received,
    Reply,
    ShipmentStore,
    ShippingEvents,
)

T = TypeVar("T")


class CarrierUnavailable(Exception):
    """The carrier gave no final answer: raised so the bus tries the command again."""


class CancelRefused(Exception):
    """The carrier refused a cancel for good: raised so the command ends in the dead letters,
    where a person looks (a compensation is never answered with a failure)."""


class DispatchRefused(Exception):
    """The carrier will not take the parcel of a confirmed order: raised so the message ends
    in the dead letters, where a person looks."""


class NoShipment(Exception):
    """An order was confirmed and shipping holds no shipment for it (yet): raised so the bus
    tries again, then keeps it in the dead letters."""


class ShippingService:
    def __init__(
        self,
        transactions: Transactions,
        shipments: ShipmentStore,
        events: ShippingEvents,
        handled: HandledCommands,
        carrier: Carrier,
        *,
        call_timeout: float = 10.0,
    ) -> None:
        self._transactions = transactions
        self._shipments = shipments
        self._events = events
        self._handled = handled
        self._carrier = carrier
        self._call_timeout = call_timeout

    async def create(self, command: CreateShipment, received: Received) -> None:
        """Book the order's parcel once, whatever the number of deliveries; answer
        `ShipmentCreated` or `ShipmentFailed`. A transient answer raises (the bus retries)
        until the last attempt, which answers `ShipmentFailed("carrier_unavailable")`."""
        known = await self._read(command.order_id)
        if known is not None:
            await self._answer(received, command.order_id, _create_reply)
            return
        address = command.address
        outcome = await self._call(
            self._carrier.create_shipment(
                order_id=command.order_id,
                address=Address(
                    name=address.name,
                    line1=address.line1,
                    city=address.city,
                    postal_code=address.postal_code,
                    country=address.country,
                    line2=address.line2,
                ),
                items=[ParcelItem(line.sku, line.quantity) for line in command.lines],
                idempotency_key=command.order_id,
            )
        )
        if isinstance(outcome, Transient):
            if not received.final_attempt:
                raise _retry(outcome)
            shipment = Shipment(command.order_id, ShipmentStatus.FAILED, reason=CARRIER_UNAVAILABLE)
        elif isinstance(outcome, Booked):
            shipment = Shipment(command.order_id, ShipmentStatus.CREATED, outcome.shipment_id)
        else:
            shipment = Shipment(command.order_id, ShipmentStatus.FAILED, reason=outcome.reason)
        await self._answer(received, command.order_id, _create_reply, shipment)

    async def cancel(self, command: CancelShipment, received: Received) -> None:
        """Void the order's shipment, once; answer `ShipmentCancelled` (also when there is
        nothing to cancel: a compensation is idempotent)."""
        shipment = await self._read(command.order_id)
        if shipment is None or shipment.status is not ShipmentStatus.CREATED:
            await self._answer(received, command.order_id, lambda s: _cancel_reply(s, command))
            return
        assert shipment.shipment_id is not None  # created
        outcome = await self._call(self._carrier.cancel_shipment(shipment.shipment_id))
        if isinstance(outcome, Transient):
            raise _retry(outcome)
        if isinstance(outcome, Refused) and outcome.reason != UNKNOWN_SHIPMENT:
            raise CancelRefused(f"{outcome.reason}: {outcome.message}")
        # Cancelled, or a carrier that holds no such shipment: nothing is booked either way.
        assert isinstance(outcome, Cancelled | Refused)
        await self._answer(
            received,
            command.order_id,
            lambda s: _cancel_reply(s, command),
            shipment.cancelled(),
        )

    async def dispatch(self, order_id: str, buyer_id: str | None, received: Received) -> None:
        """Hand a confirmed order's parcel to the carrier and publish `ShipmentDispatched`,
        once per order, whatever the deliveries: the tracking is written only where none is
        (`mark_dispatched`), and the event only with that write. A transient answer raises
        (the bus retries); a refusal raises `DispatchRefused` (a person looks)."""
        shipment = await self._read(order_id)
        if shipment is None:
            raise NoShipment(f"order {order_id} is confirmed but has no shipment here")
        if not shipment.dispatchable:
            return  # dispatched already, or nothing to dispatch (failed, cancelled)
        assert shipment.shipment_id is not None  # created
        outcome = await self._call(self._carrier.dispatch(shipment.shipment_id))
        if isinstance(outcome, Transient):
            raise _retry(outcome)
        if not isinstance(outcome, Dispatched):
            raise DispatchRefused(f"{outcome.reason}: {outcome.message}")
        async with self._transactions.transaction() as conn:
            if await self._shipments.mark_dispatched(conn, order_id, outcome.tracking):
                event = ShipmentDispatched(
                    order_id, shipment.shipment_id, outcome.tracking, buyer_id=buyer_id
                )
                await self._events.publish(conn, event, received)

    async def _call(self, call: Awaitable[T]) -> T | Transient:
        try:
            return await asyncio.wait_for(call, self._call_timeout)
        except TimeoutError:
            return Transient(f"timeout: no answer within {self._call_timeout} s")

    async def _read(self, order_id: str) -> Shipment | None:
        async with self._transactions.connect() as conn:
            return await self._shipments.get(conn, order_id)

    async def _answer(
        self,
        received: Received,
        order_id: str,
        reply: Callable[[Shipment | None], Reply],
        shipment: Shipment | None = None,
    ) -> None:
        """Record `shipment` (a new one only if the order has none: a racing delivery's
        stands; a cancel over a created one) and publish the reply built from what is
        recorded, in one transaction; nothing if the message was handled already."""
        async with self._transactions.transaction() as conn:
            if not await self._handled.first_time(conn, received.message_id):
                return
            stored = await self._shipments.get(conn, order_id)
            if shipment is not None:
                if stored is None and await self._shipments.add(conn, shipment):
                    stored = shipment
                elif stored is None:
                    stored = await self._shipments.get(conn, order_id)  # a racing delivery won
                elif (
                    stored.status is ShipmentStatus.CREATED
                    and shipment.status is ShipmentStatus.CANCELLED
                ):
                    await self._shipments.update(conn, shipment)
                    stored = shipment
            await self._events.publish(conn, reply(stored), received)


def _create_reply(shipment: Shipment | None) -> Reply:
    assert shipment is not None
    if shipment.status is ShipmentStatus.FAILED:
        return ShipmentFailed(shipment.order_id, shipment.reason or CARRIER_UNAVAILABLE)
    assert shipment.shipment_id is not None
    # A cancelled shipment was created: a repeated create is told so (the saga knows it).
    return ShipmentCreated(shipment.order_id, shipment.shipment_id)


def _cancel_reply(shipment: Shipment | None, command: CancelShipment) -> Reply:
    shipment_id = shipment.shipment_id if shipment and shipment.shipment_id else None
    return ShipmentCancelled(command.order_id, shipment_id or command.shipment_id)


def _retry(outcome: Transient) -> Exception:
    if outcome.retry_after is not None:
        return Retry(outcome.retry_after, outcome.error)
    return CarrierUnavailable(outcome.error)
