"""What the shipping service needs from the outside world: the carrier (`Carrier`), its own table
(`ShipmentStore`), where its events go (`ShippingEvents`) and the commands it already handled
(`HandledCommands`).

Creating a shipment carries an idempotency key (the saga's, one per order): a retry with the same
key books nothing new and answers what the first attempt answered; the same key with another
address or other items is `Refused("idempotency_error")`. Cancelling is idempotent by the
shipment id: a second cancel answers `Cancelled` again. Dispatching (the carrier takes the parcel
of a confirmed order) is idempotent by the shipment id too: a second dispatch answers the same
tracking number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from townhall.platform.transaction import Transaction
from townhall.shipping.domain import (
    Address,
    CancelOutcome,
    DispatchOutcome,
    ParcelItem,
    Shipment,
    ShipmentOutcome,
)
from townhall.shipping.events import (
    CreateShipment,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentFailed,
)

Reply = ShipmentCreated | ShipmentFailed | ShipmentCancelled
# What shipping publishes: the replies to the saga's commands, and the dispatch of a parcel.
Event = Reply | ShipmentDispatched


@dataclass(frozen=True)
class Received:
    """The message a command came in: its id (what the inbox dedupes on), its correlation id
    (the saga's, which the reply carries on), and whether this is the bus's last try at it."""

    message_id: str
    correlation_id: str
    final_attempt: bool = False


class Carrier(Protocol):
    """Books and cancels shipments with one carrier. Answers are values (see the domain), never
    exceptions."""

    name: str

    async def create_shipment(
        self,
        *,
        order_id: str,
        address: Address,
        items: Sequence[ParcelItem],
        idempotency_key: str,
    ) -> ShipmentOutcome: ...

    async def cancel_shipment(self, shipment_id: str) -> CancelOutcome: ...

    async def dispatch(self, shipment_id: str) -> DispatchOutcome:
        """Hand the parcel over: `Dispatched(tracking)`; the same again for a repeat."""

    async def aclose(self) -> None: ...


class ShipmentStore(Protocol):
    """Shipping's own table: one shipment per order."""

    async def get(self, conn: Transaction, order_id: str) -> Shipment | None: ...

    async def add(self, conn: Transaction, shipment: Shipment) -> bool:
        """Insert; False (and nothing written) when the order already has a shipment."""

    async def update(self, conn: Transaction, shipment: Shipment) -> None:
        """Replace the order's shipment with `shipment`."""

    async def mark_dispatched(self, conn: Transaction, order_id: str, tracking: str) -> bool:
        """Set the tracking of the order's created shipment if it has none yet; False (and
        nothing written) otherwise: the first of racing writers wins, once."""


class ShippingEvents(Protocol):
    """Where shipping's events go: written in the caller's transaction (the outbox), keyed by
    the order id, carrying the command's correlation id and the command as their cause."""

    async def publish(self, conn: Transaction, event: Event, cause: Received) -> None: ...


class HandledCommands(Protocol):
    """The inbox: the command messages already handled."""

    async def first_time(self, conn: Transaction, message_id: str) -> bool:
        """Record `message_id` as handled in the caller's transaction; False if it was."""


# --- choreography ---------------------------------------------------------------------------


class PlacedStatus(StrEnum):
    ORCHESTRATED = "orchestrated"  # its saga sends commands: nothing to do on events
    PLACED = "placed"  # choreographed, waiting for the payment
    PAID = "paid"  # the payment came before the order: booked as soon as the order comes
    CREATING = "creating"  # the carrier is asked (a cancel waits for its answer)
    DONE = "done"  # the shipment has its answer
    CANCELLED = "cancelled"  # cancelled before any shipment: none will be made


@dataclass(frozen=True)
class PlacedOrder:
    order_id: str
    status: PlacedStatus
    request: CreateShipment | None  # what to ship, for a choreographed order
    paid_by: Received | None = None  # the early `PaymentCaptured` (status `paid`), answered later


class PlacedOrders(Protocol):
    """Shipping's own record of the orders placed, and where each one's shipment is."""

    async def add(self, conn: Transaction, placed: PlacedOrder) -> bool:
        """Insert; False (nothing written) when the order is known already."""

    async def get(self, conn: Transaction, order_id: str) -> PlacedOrder | None: ...

    async def move(
        self, conn: Transaction, order_id: str, from_: tuple[PlacedStatus, ...], to: PlacedStatus
    ) -> bool:
        """Set the status to `to` if it is one of `from_`: whether it moved."""

    async def fill(self, conn: Transaction, order_id: str, request: CreateShipment) -> bool:
        """A `paid` order's request arrived: store it and move to `creating`; whether it did."""
