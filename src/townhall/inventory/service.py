"""Inventory's use cases: the catalogue (administrators' products and stock, the price quote
orders ask for) and the reservations the order saga asks for, released by a compensation, taken
for good when the order is confirmed, or given back when they expire."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from townhall.inventory.domain import (
    BelowReserved,
    Product,
    Quote,
    Reservation,
    ReservationStatus,
    StockAdjustment,
    UnknownProduct,
    check_adjustment,
    check_name,
    check_price,
    merged_lines,
    new_product,
    quote,
    unreservable,
)
from townhall.inventory.events import (
    ReleaseStock,
    ReserveStock,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from townhall.inventory.ports import Answer, Cause, Messages, Products, Reservations
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id_str
from townhall.platform.observability import get_logger
from townhall.platform.transaction import Transaction, Transactions

log = get_logger("townhall.inventory")

DEFAULT_RESERVATION_TTL = timedelta(seconds=900)
EXPIRY_INTERVAL = 15.0
EXPIRY_BATCH = 100


class Catalogue:
    """Products, their prices and their stock on hand."""

    def __init__(self, database: Transactions, products: Products, clock: Clock) -> None:
        self._db = database
        self._products = products
        self._clock = clock

    async def add(
        self, sku: str, name: str, price_cents: int, currency: str, stock: int
    ) -> Product:
        """A new product; `SkuTaken` if its sku is in use."""
        product = new_product(sku, name, price_cents, currency, stock, self._clock.now())
        async with self._db.transaction() as tx:
            await self._products.add(tx, product)
        return product

    async def get(self, sku: str) -> Product:
        async with self._db.connect() as tx:
            return await self._found(tx, sku)

    async def page(self, after: str | None, limit: int) -> tuple[list[Product], str | None]:
        """Up to `limit` products in sku order after the sku `after`, and the sku to continue
        after (None on the last page)."""
        async with self._db.connect() as tx:
            products = await self._products.page(tx, after, limit + 1)
        more = len(products) > limit
        products = products[:limit]
        return products, products[-1].sku if more else None

    async def update(
        self, sku: str, *, name: str | None = None, price_cents: int | None = None
    ) -> Product:
        if name is not None:
            check_name(name)
        if price_cents is not None:
            check_price(price_cents)
        async with self._db.transaction() as tx:
            if name is None and price_cents is None:
                return await self._found(tx, sku)
            product = await self._products.update(
                tx, sku, self._clock.now(), name=name, price_cents=price_cents
            )
        if product is None:
            raise UnknownProduct(f"no product has the sku {sku!r}", field="sku")
        return product

    async def adjust_stock(self, sku: str, delta: int, reason: str, adjusted_by: str) -> Product:
        """A restock (delta > 0) or a correction; never below what orders hold reserved
        (`BelowReserved`)."""
        check_adjustment(delta, reason)
        adjustment = StockAdjustment(
            new_id_str(), sku, delta, reason, adjusted_by, self._clock.now()
        )
        async with self._db.transaction() as tx:
            adjusted = await self._products.adjust(tx, adjustment)
            product = await self._found(tx, sku)
        if not adjusted:
            raise BelowReserved(
                f"{sku} has {product.on_hand} on hand of which {product.reserved} reserved: "
                f"it can lose at most {product.available}, not {-delta}",
                field="delta",
            )
        return product

    async def quote(self, lines: Sequence[tuple[str, int]]) -> Quote:
        async with self._db.connect() as tx:
            products = await self._products.get_many(tx, sorted({sku for sku, _ in lines}))
        return quote(lines, products)

    async def _found(self, tx: Transaction, sku: str) -> Product:
        product = await self._products.get(tx, sku)
        if product is None:
            raise UnknownProduct(f"no product has the sku {sku!r}", field="sku")
        return product


class Stock:
    """Reservations: all the lines of an order or none, one per order, answered on the bus in
    the transaction that changes the stock."""

    def __init__(
        self,
        database: Transactions,
        products: Products,
        reservations: Reservations,
        messages: Messages,
        clock: Clock,
        *,
        ttl: timedelta = DEFAULT_RESERVATION_TTL,
    ) -> None:
        self._db = database
        self._products = products
        self._reservations = reservations
        self._messages = messages
        self._clock = clock
        self._ttl = ttl

    async def reserve(
        self, command: ReserveStock, cause: Cause, *, group: str | None = None
    ) -> Answer | None:
        """Reserve the order's lines, all or none, and answer `StockReserved` or
        `StockReservationFailed` (the skus short, unknown or asked for below 1). An order
        that already has a reservation is answered as it was the first time. With `group`,
        a message that group already handled (`cause.message_id`) does nothing: None."""
        lines = tuple((line.sku, line.quantity) for line in command.lines)
        now = self._clock.now()
        async with self._db.transaction() as tx:
            if not await self._first(tx, group, cause):
                return None
            held = await self._reservations.get(tx, command.order_id)
            if held is None:
                held = await self._hold(tx, command.order_id, lines, cause, now)
            answer: Answer = (
                StockReserved(command.order_id)
                if held.succeeded
                else StockReservationFailed(command.order_id, held.shortages)
            )
            await self._messages.publish(tx, answer, cause)
        return answer

    async def _hold(
        self,
        tx: Transaction,
        order_id: str,
        lines: tuple[tuple[str, int], ...],
        cause: Cause,
        now: datetime,
    ) -> Reservation:
        merged = merged_lines(lines)
        shortages = unreservable(lines)
        if merged and not shortages:
            shortages = await self._products.reserve(tx, merged)
        reserved = bool(merged) and not shortages
        reservation = Reservation(
            order_id=order_id,
            status=ReservationStatus.RESERVED if reserved else ReservationStatus.FAILED,
            lines=merged,
            shortages=shortages,
            created_at=now,
            expires_at=now + self._ttl if reserved else None,
            correlation_id=cause.correlation_id,
        )
        await self._reservations.add(tx, reservation)
        return reservation

    async def release(
        self, command: ReleaseStock, cause: Cause, *, group: str | None = None
    ) -> StockReleased | None:
        """Give back what the order holds, and answer `StockReleased` whether it held
        anything or not (released twice, expired, refused: nothing to do is done)."""
        async with self._db.transaction() as tx:
            if not await self._first(tx, group, cause):
                return None
            released = await self._reservations.settle(
                tx, command.order_id, ReservationStatus.RELEASED, self._clock.now()
            )
            if released is not None:
                await self._products.unreserve(tx, released.lines)
            answer = StockReleased(command.order_id)
            await self._messages.publish(tx, answer, cause)
        return answer

    async def ship(self, order_id: str, cause: Cause, *, group: str | None = None) -> bool:
        """The order is confirmed: its reserved stock leaves for good (and no longer
        expires). Whether this call took it; a repeat finds nothing to take."""
        async with self._db.transaction() as tx:
            if not await self._first(tx, group, cause):
                return False
            shipped = await self._reservations.settle(
                tx, order_id, ReservationStatus.COMMITTED, self._clock.now()
            )
            if shipped is not None:
                await self._products.ship(tx, shipped.lines)
                return True
            held = await self._reservations.get(tx, order_id)
        if held is not None and held.status is not ReservationStatus.COMMITTED:
            # The saga confirmed an order whose reservation is gone (it expired while the
            # saga ran, longer than the reservation's time to live): its units are for sale.
            log.warning(
                "confirmed order holds no reservation", order_id=order_id, status=held.status
            )
        return False

    async def expire_due(self, limit: int = EXPIRY_BATCH) -> list[str]:
        """Give back the reservations whose deadline passed, each with `StockReleased` in its
        own transaction: the order ids expired now."""
        now = self._clock.now()
        async with self._db.connect() as tx:
            due = await self._reservations.expired(tx, now, limit)
        expired: list[str] = []
        for order_id in due:
            async with self._db.transaction() as tx:
                settled = await self._reservations.settle(
                    tx, order_id, ReservationStatus.EXPIRED, now
                )
                if settled is None:  # released or confirmed meanwhile
                    continue
                await self._products.unreserve(tx, settled.lines)
                cause = Cause(correlation_id=settled.correlation_id)
                await self._messages.publish(tx, StockReleased(order_id), cause)
            log.warning(
                "reservation expired: stock released",
                order_id=order_id,
                lines=dict(settled.lines),
                expires_at=settled.expires_at.isoformat() if settled.expires_at else None,
            )
            expired.append(order_id)
        return expired

    async def _first(self, tx: Transaction, group: str | None, cause: Cause) -> bool:
        if group is None or cause.message_id is None:
            return True
        return await self._messages.first_delivery(tx, group, cause.message_id)


class ReservationExpiry:
    """The background loop giving back expired reservations, in whichever processes run it
    (two never give one back twice: `Reservations.settle`)."""

    def __init__(self, stock: Stock, *, interval: float = EXPIRY_INTERVAL) -> None:
        self._stock = stock
        self._interval = interval

    async def run(self) -> None:
        """Expire what is due, then again every `interval`, until cancelled. A failed round
        is logged; the reservations stay held and the next round tries again."""
        while True:
            try:
                while len(await self._stock.expire_due()) >= EXPIRY_BATCH:
                    pass
            except Exception:
                log.exception("releasing expired reservations failed")
            await asyncio.sleep(self._interval)
