"""Inventory's bus entry points: the commands of the order saga (`inventory.commands`), and the
confirmation of an order, after which its reserved stock leaves for good (`inventory.orders`).

A command the handler cannot read is answered as refused when its order id can be read (a
permanent failure becomes a failure event), and goes to the dead letters otherwise. Anything
else that fails (the database is away) raises, so the bus retries: no command is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from townhall.inventory.choreography import GROUP as CHOREOGRAPHY_GROUP
from townhall.inventory.choreography import StockChoreography
from townhall.inventory.events import (
    COMMAND_TOPIC,
    ReleaseStock,
    ReserveStock,
    StockLine,
)
from townhall.inventory.ports import Cause
from townhall.inventory.service import Stock
from townhall.orders.events import TOPIC as ORDERS_TOPIC
from townhall.orders.events import OrderCancelRequested, OrderConfirmed, OrderPlaced
from townhall.payments import events as payments
from townhall.platform.messaging import ConsumerSpec, Envelope
from townhall.platform.observability import get_logger

log = get_logger("townhall.inventory")

COMMANDS_GROUP = "inventory.commands"
ORDERS_GROUP = "inventory.orders"


def cause_of(envelope: Envelope) -> Cause:
    return Cause(
        correlation_id=envelope.headers.get("correlation_id", str(envelope.id)),
        message_id=str(envelope.id),
    )


def _reserve_command(payload: Mapping[str, Any]) -> ReserveStock:
    """`ReserveStock.from_payload`, strict about types: a line that is not a sku (a string)
    and a quantity (an integer) is refused here, not half-way through a reservation."""
    command = ReserveStock.from_payload(payload)
    for line in command.lines:
        if not isinstance(line.sku, str) or type(line.quantity) is not int:
            raise TypeError(f"not a stock line: {line!r}")
    if not isinstance(command.order_id, str):
        raise TypeError("order_id is not a string")
    return command


class InventoryConsumers:
    def __init__(
        self,
        stock: Stock,
        choreography: StockChoreography | None = None,
        *,
        max_attempts: int = 5,
    ) -> None:
        self._stock = stock
        self._choreography = choreography
        self._max_attempts = max_attempts

    def specs(self) -> list[ConsumerSpec]:
        choreography = [
            ConsumerSpec(
                topic,
                CHOREOGRAPHY_GROUP,
                lambda: self.on_choreography,
                max_attempts=self._max_attempts,
            )
            for topic in (ORDERS_TOPIC, payments.TOPIC)
            if self._choreography is not None
        ]
        return [
            *choreography,
            ConsumerSpec(
                COMMAND_TOPIC,
                COMMANDS_GROUP,
                lambda: self.on_command,
                max_attempts=self._max_attempts,
            ),
            ConsumerSpec(
                ORDERS_TOPIC, ORDERS_GROUP, lambda: self.on_order, max_attempts=self._max_attempts
            ),
        ]

    async def on_command(self, envelope: Envelope) -> None:
        cause = cause_of(envelope)
        if envelope.type == ReserveStock.type:
            try:
                command = _reserve_command(envelope.payload)
            except (KeyError, TypeError, ValueError, AttributeError):
                command = self._unreadable(envelope)
            await self._stock.reserve(command, cause, group=COMMANDS_GROUP)
        elif envelope.type == ReleaseStock.type:
            order_id = self._order_id(envelope)
            await self._stock.release(ReleaseStock(order_id), cause, group=COMMANDS_GROUP)
        else:
            log.warning("unknown inventory command ignored", type=envelope.type, id=envelope.id)

    async def on_order(self, envelope: Envelope) -> None:
        if envelope.type != OrderConfirmed.type:
            return
        order_id = self._order_id(envelope)
        await self._stock.ship(order_id, cause_of(envelope), group=ORDERS_GROUP)

    async def on_choreography(self, envelope: Envelope) -> None:
        """The choreography (group `inventory.choreography`): reserve on a choreographed
        `OrderPlaced`, release on payments' failure or refund and on a cancel request."""
        assert self._choreography is not None
        cause = cause_of(envelope)
        if envelope.type == OrderPlaced.type:
            await self._choreography.on_order_placed(
                OrderPlaced.from_payload(envelope.payload), cause
            )
        elif envelope.type in (payments.PaymentFailed.type, payments.PaymentRefunded.type):
            await self._choreography.on_payment_undone(self._order_id(envelope), cause)
        elif envelope.type == OrderCancelRequested.type:
            await self._choreography.on_cancel_requested(self._order_id(envelope), cause)

    def _unreadable(self, envelope: Envelope) -> ReserveStock:
        """A reservation that cannot be made: refused (one line of a sku no product can have,
        which is what the refusal names), so the saga ends instead of waiting."""
        log.warning("unreadable ReserveStock refused", id=envelope.id, payload=envelope.payload)
        return ReserveStock(self._order_id(envelope), (StockLine("?", 0),))

    def _order_id(self, envelope: Envelope) -> str:
        payload = envelope.payload
        order_id = payload.get("order_id") if isinstance(payload, dict) else None
        if not isinstance(order_id, str) or not order_id:
            # Nothing to answer: the dead letters keep it for a person.
            raise ValueError(f"{envelope.type} without an order id: {payload!r}")
        return order_id
