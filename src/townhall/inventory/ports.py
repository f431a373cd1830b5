"""What inventory's use cases need from the world: where products and reservations are kept,
and how the answers to commands leave (the outbox, in the state change's transaction).

Every method takes the caller's open `Transaction`: a use case reads, writes and enqueues its
answer on one handle, so they commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from townhall.inventory.domain import Product, Reservation, ReservationStatus, StockAdjustment
from townhall.inventory.events import StockReleased, StockReservationFailed, StockReserved
from townhall.platform.transaction import Transaction

Answer = StockReserved | StockReservationFailed | StockReleased


@dataclass(frozen=True)
class Cause:
    """The message a use case acts on: its answer carries the same correlation id and names
    it as its cause, so the saga's timeline links them. `message_id` is None for what a
    process does of itself (an expiry)."""

    correlation_id: str | None
    message_id: str | None = None


class Products(Protocol):
    """The catalogue and its stock. Stock changes are conditional updates: each applies only
    if it leaves `0 <= reserved <= on_hand`, so no interleaving of callers breaks that."""

    async def add(self, tx: Transaction, product: Product) -> None:
        """Insert; `SkuTaken` if the sku is in use (the caller's transaction stays usable)."""
        ...

    async def get(self, tx: Transaction, sku: str) -> Product | None: ...

    async def get_many(self, tx: Transaction, skus: Sequence[str]) -> dict[str, Product]:
        """The products of `skus` that exist, by sku."""
        ...

    async def page(self, tx: Transaction, after: str | None, limit: int) -> list[Product]:
        """Up to `limit` products in sku order, those after the sku `after` when given."""
        ...

    async def update(
        self,
        tx: Transaction,
        sku: str,
        at: datetime,
        *,
        name: str | None = None,
        price_cents: int | None = None,
    ) -> Product | None:
        """Change the given fields; the product as it is now, or None if there is none."""
        ...

    async def adjust(self, tx: Transaction, adjustment: StockAdjustment) -> bool:
        """Add `adjustment.delta` to the stock on hand and keep the adjustment, if that
        leaves at least what is reserved; False, writing nothing, otherwise (or for an
        unknown sku)."""
        ...

    async def reserve(self, tx: Transaction, lines: Sequence[tuple[str, int]]) -> tuple[str, ...]:
        """Reserve every line (sku, quantity; merged and in sku order) or none: the skus
        short of stock or unknown, in sku order; empty when all were reserved."""
        ...

    async def unreserve(self, tx: Transaction, lines: Sequence[tuple[str, int]]) -> None:
        """Give reserved units back (a released or expired reservation)."""
        ...

    async def ship(self, tx: Transaction, lines: Sequence[tuple[str, int]]) -> None:
        """Reserved units leave the warehouse: on hand and reserved both go down."""
        ...


class Reservations(Protocol):
    """At most one reservation per order: its lines, its status and its deadline."""

    async def get(self, tx: Transaction, order_id: str) -> Reservation | None: ...

    async def add(self, tx: Transaction, reservation: Reservation) -> None:
        """Insert; a second reservation of the order raises (the transaction is to be rolled
        back and the command handled again, when it finds the first)."""
        ...

    async def settle(
        self, tx: Transaction, order_id: str, status: ReservationStatus, at: datetime
    ) -> Reservation | None:
        """Move the order's reservation from RESERVED to `status`: the reservation (now in
        `status`), if this call moved it; None if it was not RESERVED (none, failed, already
        settled). Of callers racing to settle one reservation exactly one gets it."""
        ...

    async def expired(self, tx: Transaction, now: datetime, limit: int) -> list[str]:
        """Order ids of up to `limit` reservations still RESERVED whose deadline has passed,
        the oldest deadline first."""
        ...


class Messages(Protocol):
    """The bus as inventory's use cases see it."""

    async def first_delivery(self, tx: Transaction, group: str, message_id: str) -> bool:
        """Record that `group` handles the message; False if it already did (a redelivery)."""
        ...

    async def publish(self, tx: Transaction, answer: Answer, cause: Cause) -> None:
        """Send `answer` (keyed by its order id) once the transaction commits."""
        ...


class ChoreographedOrders(Protocol):
    """The orders inventory takes part in by choreography (it reserved on their placement)."""

    async def add(self, tx: Transaction, order_id: str, *, cancelled: bool, at: datetime) -> None:
        """Record the order (cancelled or not); nothing if it is recorded already."""

    async def cancel(self, tx: Transaction, order_id: str, at: datetime) -> None:
        """Record the order as cancelled (recording it first if needed)."""

    async def get(self, tx: Transaction, order_id: str) -> bool | None:
        """Whether the order is cancelled; None when it is not a choreographed order."""
