"""Inventory's stores on SQLAlchemy Core (SQLite and PostgreSQL).

Each method takes the service's opaque `Transaction` and works on the SQLAlchemy connection
behind it. Stock changes are single conditional UPDATEs: on PostgreSQL (read committed) a
writer waits for the row lock of a concurrent one and then tests its condition again on the
row as that one left it, so two orders can never both take the last unit; on SQLite a writing
transaction holds the database's write lock (`BEGIN IMMEDIATE`) from its start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from townhall.inventory.adapters.tables import (
    choreographed,
    products,
    reservations,
    stock_adjustments,
)
from townhall.inventory.domain import (
    Product,
    Reservation,
    ReservationStatus,
    SkuTaken,
    StockAdjustment,
)
from townhall.platform.db import connection
from townhall.platform.transaction import Transaction

_p = products.c
PRODUCT = products.select().where(_p.sku == bindparam("b_sku"))
PRODUCTS = products.select().where(_p.sku.in_(bindparam("b_skus", expanding=True)))
# Each applies only while it keeps 0 <= reserved <= on_hand: the WHERE is the rule.
RESERVE = (
    products.update()
    .where(_p.sku == bindparam("b_sku"), _p.on_hand - _p.reserved >= bindparam("b_quantity"))
    .values(reserved=_p.reserved + bindparam("b_quantity"))
)
UNRESERVE = (
    products.update()
    .where(_p.sku == bindparam("b_sku"), _p.reserved >= bindparam("b_quantity"))
    .values(reserved=_p.reserved - bindparam("b_quantity"))
)
SHIP = (
    products.update()
    .where(_p.sku == bindparam("b_sku"), _p.reserved >= bindparam("b_quantity"))
    .values(
        on_hand=_p.on_hand - bindparam("b_quantity"),
        reserved=_p.reserved - bindparam("b_quantity"),
    )
)
ADJUST = (
    products.update()
    .where(_p.sku == bindparam("b_sku"), _p.on_hand + bindparam("b_delta") >= _p.reserved)
    .values(on_hand=_p.on_hand + bindparam("b_delta"), updated_at=bindparam("b_at"))
)

_r = reservations.c
RESERVATION = reservations.select().where(_r.order_id == bindparam("b_order_id"))
SETTLE = (
    reservations.update()
    .where(
        _r.order_id == bindparam("b_order_id"),
        _r.status == ReservationStatus.RESERVED.value,
    )
    .values(status=bindparam("b_status"), settled_at=bindparam("b_at"))
)
EXPIRED = (
    sa.select(_r.order_id)
    .where(_r.status == ReservationStatus.RESERVED.value, _r.expires_at <= bindparam("b_now"))
    .order_by(_r.expires_at)
)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; they were stored as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _product(row: Any) -> Product:
    return Product(
        sku=row.sku,
        name=row.name,
        price_cents=row.price_cents,
        currency=row.currency,
        on_hand=row.on_hand,
        reserved=row.reserved,
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        updated_at=_aware(row.updated_at),  # type: ignore[arg-type]
    )


class SqlProducts:
    async def add(self, tx: Transaction, product: Product) -> None:
        sql = connection(tx)
        try:
            # A savepoint keeps the caller's transaction usable after a duplicate.
            async with sql.begin_nested():
                await sql.execute(
                    products.insert().values(
                        sku=product.sku,
                        name=product.name,
                        price_cents=product.price_cents,
                        currency=product.currency,
                        on_hand=product.on_hand,
                        reserved=product.reserved,
                        created_at=product.created_at,
                        updated_at=product.updated_at,
                    )
                )
        except IntegrityError:
            raise SkuTaken(f"the sku {product.sku!r} is taken", field="sku") from None

    async def get(self, tx: Transaction, sku: str) -> Product | None:
        row = (await connection(tx).execute(PRODUCT, {"b_sku": sku})).first()
        return _product(row) if row else None

    async def get_many(self, tx: Transaction, skus: Sequence[str]) -> dict[str, Product]:
        if not skus:
            return {}
        rows = await connection(tx).execute(PRODUCTS, {"b_skus": list(skus)})
        return {row.sku: _product(row) for row in rows}

    async def page(self, tx: Transaction, after: str | None, limit: int) -> list[Product]:
        query = products.select().order_by(_p.sku).limit(limit)
        if after is not None:
            query = query.where(_p.sku > after)
        return [_product(row) for row in await connection(tx).execute(query)]

    async def update(
        self,
        tx: Transaction,
        sku: str,
        at: datetime,
        *,
        name: str | None = None,
        price_cents: int | None = None,
    ) -> Product | None:
        values: dict[str, Any] = {"updated_at": at}
        if name is not None:
            values["name"] = name
        if price_cents is not None:
            values["price_cents"] = price_cents
        sql = connection(tx)
        await sql.execute(products.update().where(_p.sku == sku).values(**values))
        return await self.get(tx, sku)

    async def adjust(self, tx: Transaction, adjustment: StockAdjustment) -> bool:
        sql = connection(tx)
        result = await sql.execute(
            ADJUST, {"b_sku": adjustment.sku, "b_delta": adjustment.delta, "b_at": adjustment.at}
        )
        if result.rowcount != 1:
            return False
        await sql.execute(
            stock_adjustments.insert().values(
                id=adjustment.id,
                sku=adjustment.sku,
                delta=adjustment.delta,
                reason=adjustment.reason,
                adjusted_by=adjustment.adjusted_by,
                at=adjustment.at,
            )
        )
        return True

    async def reserve(self, tx: Transaction, lines: Sequence[tuple[str, int]]) -> tuple[str, ...]:
        sql = connection(tx)
        taken: list[tuple[str, int]] = []
        short: list[str] = []
        # Every line is tried, so the answer names every sku that is short, not the first.
        for sku, quantity in lines:
            result = await sql.execute(RESERVE, {"b_sku": sku, "b_quantity": quantity})
            if result.rowcount == 1:
                taken.append((sku, quantity))
            else:
                short.append(sku)
        if short:  # all or none: give back what this call took (its row locks are still held)
            await self.unreserve(tx, taken)
        return tuple(short)

    async def unreserve(self, tx: Transaction, lines: Sequence[tuple[str, int]]) -> None:
        await self._each(tx, UNRESERVE, lines)

    async def ship(self, tx: Transaction, lines: Sequence[tuple[str, int]]) -> None:
        await self._each(tx, SHIP, lines)

    async def _each(
        self, tx: Transaction, statement: Any, lines: Sequence[tuple[str, int]]
    ) -> None:
        sql = connection(tx)
        for sku, quantity in lines:
            await sql.execute(statement, {"b_sku": sku, "b_quantity": quantity})


def _reservation(row: Any) -> Reservation:
    return Reservation(
        order_id=row.order_id,
        status=ReservationStatus(row.status),
        lines=tuple((sku, int(quantity)) for sku, quantity in row.lines),
        shortages=tuple(row.shortages),
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
        expires_at=_aware(row.expires_at),
        settled_at=_aware(row.settled_at),
        correlation_id=row.correlation_id,
    )


class SqlReservations:
    async def get(self, tx: Transaction, order_id: str) -> Reservation | None:
        row = (await connection(tx).execute(RESERVATION, {"b_order_id": order_id})).first()
        return _reservation(row) if row else None

    async def add(self, tx: Transaction, reservation: Reservation) -> None:
        await connection(tx).execute(
            reservations.insert().values(
                order_id=reservation.order_id,
                status=reservation.status.value,
                lines=[list(line) for line in reservation.lines],
                shortages=list(reservation.shortages),
                created_at=reservation.created_at,
                expires_at=reservation.expires_at,
                settled_at=reservation.settled_at,
                correlation_id=reservation.correlation_id,
            )
        )

    async def settle(
        self, tx: Transaction, order_id: str, status: ReservationStatus, at: datetime
    ) -> Reservation | None:
        result = await connection(tx).execute(
            SETTLE, {"b_order_id": order_id, "b_status": status.value, "b_at": at}
        )
        if result.rowcount != 1:
            return None
        return await self.get(tx, order_id)

    async def expired(self, tx: Transaction, now: datetime, limit: int) -> list[str]:
        rows = await connection(tx).execute(EXPIRED.limit(limit), {"b_now": now})
        return [row.order_id for row in rows]


class SqlChoreographedOrders:
    async def add(self, tx: Transaction, order_id: str, *, cancelled: bool, at: datetime) -> None:
        sql = connection(tx)
        insert = postgresql.insert if sql.dialect.name == "postgresql" else sqlite.insert
        await sql.execute(
            insert(choreographed)
            .values(order_id=order_id, cancelled=cancelled, created_at=at)
            .on_conflict_do_nothing()
        )

    async def cancel(self, tx: Transaction, order_id: str, at: datetime) -> None:
        await self.add(tx, order_id, cancelled=True, at=at)
        await connection(tx).execute(
            choreographed.update()
            .where(choreographed.c.order_id == order_id)
            .values(cancelled=True)
        )

    async def get(self, tx: Transaction, order_id: str) -> bool | None:
        query = sa.select(choreographed.c.cancelled).where(choreographed.c.order_id == order_id)
        cancelled = (await connection(tx).execute(query)).scalar()
        return None if cancelled is None else bool(cancelled)
