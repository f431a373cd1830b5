"""Orders' read models: how fast each projection rebuilds from zero, on SQLite and PostgreSQL.

Seeds N orders in the event store (each: OrderPlaced with 2 lines, StockReserved,
PaymentCaptured, ShipmentCreated, OrderConfirmed: 5 events), then times
`Projections.rebuild` of `orders.summaries` and `orders.sales` (batches of 500 events, one
transaction each, checkpoint included). Prints events/s per projection; asserts nothing.

    python bench/orders_read_models.py            # 2000 orders (10 000 events)
    python bench/orders_read_models.py --quick    # 200 orders
Needs PostgreSQL on 127.0.0.1:5432 (trust, user postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

import townhall.orders
from townhall.orders.adapters.eventstore import EventStoreOrders
from townhall.orders.adapters.sql import SqlOrderSummaries, SqlSales
from townhall.orders.domain import (
    Address,
    OrderConfirmed,
    OrderLine,
    PaymentCaptured,
    SagaMode,
    ShipmentCreated,
    StockReserved,
    fold,
    place,
)
from townhall.platform.clock import FrozenClock
from townhall.platform.db import Database
from townhall.platform.eventstore import Projection, Projections
from townhall.platform.eventstore import connect as connect_eventstore
from townhall.platform.migrations import migrate

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MIGRATIONS = Path(townhall.orders.__file__).parent / "migrations"
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
ADDRESS = Address("Ada", "1 Main Street", "Ghent", "9000", "BE")
LINES = (OrderLine("tee-m", 2, 1500), OrderLine("ticket-2027", 1, 4000))


async def seed(database: Database, orders: EventStoreOrders, count: int) -> None:
    for index in range(count):
        at = T0 + timedelta(minutes=index)
        placed = place(
            buyer_id=f"buyer-{index % 50}",
            lines=LINES,
            currency="EUR",
            shipping_address=ADDRESS,
            saga_mode=SagaMode.ORCHESTRATION,
            clock=FrozenClock(at),
        )
        events = [
            placed,
            StockReserved(at=at),
            PaymentCaptured(at=at, payment_id=f"pay-{index}", amount_cents=7000),
            ShipmentCreated(at=at, shipment_id=f"ship-{index}"),
            OrderConfirmed(at=at),
        ]
        assert fold(events) is not None
        async with database.transaction() as conn:
            await orders.append(conn, None, events)


async def run(url: str, count: int) -> list[tuple[str, int, float]]:
    database = Database(url)
    await migrate(database, [MIGRATIONS])
    store = await connect_eventstore(database)
    try:
        await seed(database, EventStoreOrders(store, snapshot_every=0), count)
        projections = Projections(store)
        for read_model in (SqlOrderSummaries(), SqlSales()):
            projections.register(Projection(read_model.name, read_model.project, read_model.reset))
        rows = []
        for name in projections.names:
            gc.collect()
            started = time.perf_counter()
            replayed = await projections.rebuild(name)
            rows.append((name, replayed, replayed / (time.perf_counter() - started)))
        return rows
    finally:
        await store.close()
        await database.dispose()


async def main(count: int) -> None:
    results: list[tuple[str, str, int, float]] = []
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        results += [("SQLite", *row) for row in await run(url, count)]
    name = f"bench_orders_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        results += [("PostgreSQL", *row) for row in await run(url, count)]
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    print(f"{count} orders, {count * 5} events; rebuild from zero, batches of 500")
    print(f"{'database':<12} {'projection':<18} {'events':>8} {'events/s':>10}")
    for database, projection, replayed, rate in results:
        print(f"{database:<12} {projection:<18} {replayed:>8} {rate:>10.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 orders instead of 2000")
    arguments = parser.parse_args()
    asyncio.run(main(200 if arguments.quick else 2000))
