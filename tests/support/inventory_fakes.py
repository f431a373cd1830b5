"""In-memory fakes of inventory's ports, for unit tests of its services (no database).
`tests/contract/inventory/test_stores.py` runs one suite against these and the SQL stores, so a
fake cannot drift from what the real ones do.

A transaction is a snapshot: an exception inside it puts every dict back as it was, as a
rollback would; transactions run one at a time (as on SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from townhall.inventory.domain import (
    Product,
    Reservation,
    ReservationStatus,
    SkuTaken,
    StockAdjustment,
)
from townhall.inventory.ports import Answer, Cause


class Handle:
    """The opaque transaction handle the fakes are given (they keep their state themselves)."""


@dataclass
class MemoryInventory:
    products: dict[str, Product] = field(default_factory=dict)
    adjustments: list[StockAdjustment] = field(default_factory=list)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    handled: set[tuple[str, str]] = field(default_factory=set)
    # The outbox: (type, key, payload, headers) of each answer, in order.
    published: list[tuple[str, str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Handle]:
        async with self._lock:
            saved = (
                dict(self.products),
                list(self.adjustments),
                dict(self.reservations),
                set(self.handled),
                list(self.published),
            )
            try:
                yield Handle()
            except BaseException:
                (
                    self.products,
                    self.adjustments,
                    self.reservations,
                    self.handled,
                    self.published,
                ) = saved
                raise

    connect = transaction

    def stores(self) -> tuple[FakeProducts, FakeReservations, FakeMessages]:
        return FakeProducts(self), FakeReservations(self), FakeMessages(self)


class FakeProducts:
    def __init__(self, memory: MemoryInventory) -> None:
        self._m = memory

    async def add(self, tx: Handle, product: Product) -> None:
        if product.sku in self._m.products:
            raise SkuTaken(f"the sku {product.sku!r} is taken", field="sku")
        self._m.products[product.sku] = product

    async def get(self, tx: Handle, sku: str) -> Product | None:
        return self._m.products.get(sku)

    async def get_many(self, tx: Handle, skus: Sequence[str]) -> dict[str, Product]:
        return {sku: self._m.products[sku] for sku in skus if sku in self._m.products}

    async def page(self, tx: Handle, after: str | None, limit: int) -> list[Product]:
        skus = sorted(sku for sku in self._m.products if after is None or sku > after)
        return [self._m.products[sku] for sku in skus[:limit]]

    async def update(
        self,
        tx: Handle,
        sku: str,
        at: datetime,
        *,
        name: str | None = None,
        price_cents: int | None = None,
    ) -> Product | None:
        product = self._m.products.get(sku)
        if product is None:
            return None
        changes: dict[str, Any] = {"updated_at": at}
        if name is not None:
            changes["name"] = name
        if price_cents is not None:
            changes["price_cents"] = price_cents
        self._m.products[sku] = replace(product, **changes)
        return self._m.products[sku]

    async def adjust(self, tx: Handle, adjustment: StockAdjustment) -> bool:
        product = self._m.products.get(adjustment.sku)
        if product is None or product.on_hand + adjustment.delta < product.reserved:
            return False
        self._m.products[adjustment.sku] = replace(
            product, on_hand=product.on_hand + adjustment.delta, updated_at=adjustment.at
        )
        self._m.adjustments.append(adjustment)
        return True

    async def reserve(self, tx: Handle, lines: Sequence[tuple[str, int]]) -> tuple[str, ...]:
        products = self._m.products
        short = tuple(
            sku
            for sku, quantity in lines
            if sku not in products or products[sku].available < quantity
        )
        if not short:
            for sku, quantity in lines:
                products[sku] = replace(products[sku], reserved=products[sku].reserved + quantity)
        return short

    async def unreserve(self, tx: Handle, lines: Sequence[tuple[str, int]]) -> None:
        for sku, quantity in lines:
            product = self._m.products.get(sku)
            if product is not None and product.reserved >= quantity:
                self._m.products[sku] = replace(product, reserved=product.reserved - quantity)

    async def ship(self, tx: Handle, lines: Sequence[tuple[str, int]]) -> None:
        for sku, quantity in lines:
            product = self._m.products.get(sku)
            if product is not None and product.reserved >= quantity:
                self._m.products[sku] = replace(
                    product,
                    on_hand=product.on_hand - quantity,
                    reserved=product.reserved - quantity,
                )


class ReservationExists(Exception):
    """What the SQL store's primary key does for a second reservation of one order."""


class FakeReservations:
    def __init__(self, memory: MemoryInventory) -> None:
        self._m = memory

    async def get(self, tx: Handle, order_id: str) -> Reservation | None:
        return self._m.reservations.get(order_id)

    async def add(self, tx: Handle, reservation: Reservation) -> None:
        if reservation.order_id in self._m.reservations:
            raise ReservationExists(reservation.order_id)
        self._m.reservations[reservation.order_id] = reservation

    async def settle(
        self, tx: Handle, order_id: str, status: ReservationStatus, at: datetime
    ) -> Reservation | None:
        held = self._m.reservations.get(order_id)
        if held is None or held.status is not ReservationStatus.RESERVED:
            return None
        self._m.reservations[order_id] = replace(held, status=status, settled_at=at)
        return self._m.reservations[order_id]

    async def expired(self, tx: Handle, now: datetime, limit: int) -> list[str]:
        due = [
            r
            for r in self._m.reservations.values()
            if r.status is ReservationStatus.RESERVED
            and r.expires_at is not None
            and r.expires_at <= now
        ]
        due.sort(key=lambda r: r.expires_at or now)
        return [r.order_id for r in due[:limit]]


class FakeMessages:
    def __init__(self, memory: MemoryInventory) -> None:
        self._m = memory

    async def first_delivery(self, tx: Handle, group: str, message_id: str) -> bool:
        if (group, message_id) in self._m.handled:
            return False
        self._m.handled.add((group, message_id))
        return True

    async def publish(self, tx: Handle, answer: Answer, cause: Cause) -> None:
        headers = {}
        if cause.correlation_id is not None:
            headers["correlation_id"] = cause.correlation_id
        if cause.message_id is not None:
            headers["causation_id"] = cause.message_id
        self._m.published.append((answer.type, answer.order_id, answer.to_payload(), headers))
