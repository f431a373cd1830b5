"""Stock is never sold twice: many orders reserving at once, for fewer items than they ask, on
PostgreSQL (and SQLite): exactly the stock is reserved, no product goes below zero or below
what is reserved, and releasing every reservation twice at once gives each back once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

import townhall.inventory
from townhall.inventory.adapters.outbox import OutboxMessages
from townhall.inventory.adapters.sql import SqlProducts, SqlReservations
from townhall.inventory.adapters.tables import products, reservations
from townhall.inventory.events import (
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from townhall.inventory.ports import Cause
from townhall.inventory.service import Catalogue, Stock
from townhall.platform.clock import SystemClock
from townhall.platform.db import Database
from townhall.platform.migrations import migrate
from townhall.platform.outbox import outbox_messages

pytestmark = pytest.mark.timeout(120)

MIGRATIONS = Path(townhall.inventory.__file__).parent / "migrations"
HOT_STOCK = 25
ORDERS = 100


@pytest.fixture
async def world(database_url):
    database = Database(database_url, pool_size=20)
    await migrate(database, [MIGRATIONS])
    clock = SystemClock()
    store = SqlProducts()
    catalogue = Catalogue(database, store, clock)
    await catalogue.add("hot", "Last tickets", 4000, "EUR", HOT_STOCK)
    await catalogue.add("plenty", "Badge", 200, "EUR", 10_000)
    stock = Stock(database, store, SqlReservations(), OutboxMessages(), clock)
    try:
        yield database, stock
    finally:
        await database.dispose()


async def levels(database: Database) -> dict[str, tuple[int, int]]:
    async with database.connect() as conn:
        rows = await conn.execute(
            sa.select(products.c.sku, products.c.on_hand, products.c.reserved)
        )
        return {row.sku: (row.on_hand, row.reserved) for row in rows}


async def held(database: Database) -> dict[str, int]:
    """Units held by reservations still RESERVED, per sku."""
    totals: dict[str, int] = {}
    async with database.connect() as conn:
        rows = await conn.execute(
            sa.select(reservations.c.lines).where(reservations.c.status == "reserved")
        )
        for row in rows:
            for sku, quantity in row.lines:
                totals[sku] = totals.get(sku, 0) + quantity
    return totals


async def test_concurrent_orders_reserve_exactly_the_stock_and_release_it_once(world):
    database, stock = world

    def basket(n: int) -> ReserveStock:
        # Half the baskets name their skus in the other order: the rows are locked in sku
        # order whatever the basket says, so no two reservations deadlock.
        lines = (StockLine("hot", 1), StockLine("plenty", 2))
        return ReserveStock(f"order-{n:03d}", lines if n % 2 else lines[::-1])

    answers = await asyncio.gather(
        *(stock.reserve(basket(n), Cause(f"saga-{n}", f"m-{n}")) for n in range(ORDERS))
    )
    reserved = [a for a in answers if isinstance(a, StockReserved)]
    refused = [a for a in answers if isinstance(a, StockReservationFailed)]
    assert len(reserved) == HOT_STOCK
    assert len(refused) == ORDERS - HOT_STOCK
    assert {a.skus for a in refused} == {("hot",)}
    assert await levels(database) == {
        "hot": (HOT_STOCK, HOT_STOCK),
        "plenty": (10_000, 2 * HOT_STOCK),
    }
    assert await held(database) == {"hot": HOT_STOCK, "plenty": 2 * HOT_STOCK}
    async with database.connect() as conn:
        answered = (
            await conn.execute(sa.select(sa.func.count()).select_from(outbox_messages))
        ).scalar()
    assert answered == ORDERS

    releases = await asyncio.gather(
        *(
            stock.release(ReleaseStock(a.order_id), Cause("saga", f"r-{a.order_id}-{k}"))
            for a in reserved
            for k in range(2)
        )
    )
    assert all(isinstance(r, StockReleased) for r in releases)
    assert await levels(database) == {"hot": (HOT_STOCK, 0), "plenty": (10_000, 0)}
    assert await held(database) == {}


async def test_orders_racing_for_the_last_units_of_several_skus_never_oversell(world):
    database, stock = world
    # 100 orders of 3 "hot" each for 25: at most 8 can have them, and exactly 8 do.
    answers = await asyncio.gather(
        *(
            stock.reserve(
                ReserveStock(f"big-{n}", (StockLine("hot", 3), StockLine("plenty", 1))),
                Cause(f"saga-{n}", f"m-{n}"),
            )
            for n in range(ORDERS)
        )
    )
    winners = sum(isinstance(a, StockReserved) for a in answers)
    assert winners == HOT_STOCK // 3
    on_hand, reserved = (await levels(database))["hot"]
    assert (on_hand, reserved) == (HOT_STOCK, 3 * winners)
    assert (await levels(database))["plenty"] == (10_000, winners)
