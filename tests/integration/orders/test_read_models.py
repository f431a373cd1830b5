"""Orders' read-model projections and saga lists on SQLite and PostgreSQL, without the app:
a projection gives the same rows whether the events come in one batch or one at a time, and a
batch delivered again changes nothing; and the administrators' lists of sagas (running, failed,
stuck) select and page as documented."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import townhall.orders
from support.databases import migrated_database
from support.orders import ADDRESS, LINES, T0
from townhall.orders.adapters.eventstore import EventStoreOrders
from townhall.orders.adapters.sql import (
    SqlOrderSummaries,
    SqlSagaOverviews,
    SqlSales,
    SqlTimeline,
)
from townhall.orders.adapters.tables import sagas, sales, sales_baskets, summaries
from townhall.orders.domain import (
    FailureReason,
    OrderCancelled,
    OrderConfirmed,
    OrderEvent,
    OrderFailed,
    SagaMode,
    place,
)
from townhall.orders.ports import SagaFilter
from townhall.orders.queries import STUCK_ATTEMPTS, STUCK_OVERDUE, OrderViews
from townhall.platform.clock import FrozenClock
from townhall.platform.eventstore import connect as connect_eventstore
from townhall.platform.ids import new_id

pytestmark = pytest.mark.timeout(60)

MIGRATIONS = Path(townhall.orders.__file__).parent / "migrations"
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, tmp_path):
    async with migrated_database(request.param, tmp_path, [MIGRATIONS]) as database:
        yield database


async def record(database, orders: EventStoreOrders, ending: OrderEvent | None, at=T0) -> str:
    placed = place(
        buyer_id="buyer-1",
        lines=LINES,
        currency="EUR",
        shipping_address=ADDRESS,
        saga_mode=SagaMode.ORCHESTRATION,
        clock=FrozenClock(at),
    )
    async with database.transaction() as conn:
        await orders.append(conn, None, [placed])
    if ending is not None:
        async with database.transaction() as conn:
            order = await orders.load(conn, placed.order_id)
            await orders.append(conn, order, [ending])
    return str(placed.order_id)


async def rows(database, *tables) -> list[list[tuple]]:
    async with database.connect() as conn:
        return [
            [tuple(row) for row in await conn.execute(sa.select(t).order_by(*t.primary_key))]
            for t in tables
        ]


async def test_projections_apply_each_event_once_whatever_the_batches(database):
    eventstore = await connect_eventstore(database)
    try:
        await check_projections(database, eventstore)
    finally:
        await eventstore.close()


async def check_projections(database, eventstore) -> None:
    orders = EventStoreOrders(eventstore)
    hour = timedelta(hours=1)
    confirmed = await record(database, orders, OrderConfirmed(at=T0 + hour))
    failed = await record(
        database,
        orders,
        OrderFailed(at=T0 + hour, reason=FailureReason.PAYMENT_DECLINED, decline_code="x"),
    )
    cancelled = await record(database, orders, OrderCancelled(at=T0 + hour))
    pending = await record(database, orders, None, at=T0 + hour)
    next_day = await record(database, orders, OrderConfirmed(at=T0 + DAY))
    events = await eventstore.read_all(limit=100)
    assert len(events) == 9

    for projection, tables in (
        (SqlOrderSummaries(), (summaries,)),
        (SqlSales(), (sales, sales_baskets)),
    ):
        async with database.transaction() as conn:
            await projection.project(events, conn)
        in_one_batch = await rows(database, *tables)
        async with database.transaction() as conn:
            await projection.project(events, conn)  # delivered again: nothing changes
        assert await rows(database, *tables) == in_one_batch
        async with database.transaction() as conn:
            await projection.reset(conn)
        assert await rows(database, *tables) == [[] for _ in tables]
        for event in events:
            async with database.transaction() as conn:
                await projection.project([event], conn)
        assert await rows(database, *tables) == in_one_batch, projection.name

    views = OrderViews(
        database,
        SqlOrderSummaries(),
        SqlSales(),
        SqlSagaOverviews(),
        SqlTimeline(),
        FrozenClock(T0),
    )
    listed = await views.orders_of("buyer-1", None, 10)
    assert [(s.order_id, s.status, s.version) for s in listed] == [
        (pending, "PENDING", 1),
        (next_day, "CONFIRMED", 2),
        (cancelled, "CANCELLED", 2),
        (failed, "FAILED", 2),
        (confirmed, "CONFIRMED", 2),
    ]
    assert (listed[3].reason, listed[3].decline_code) == ("payment_declined", "x")
    assert listed[1].created_at == T0
    assert listed[1].updated_at == T0 + DAY
    assert listed[1].items == LINES
    assert listed[1].total_cents == 2 * 1500 + 4000
    assert await views.orders_of("buyer-2", None, 10) == []
    report = await views.sales(T0.date(), (T0 + DAY).date())
    assert [(r.day, r.sku, r.quantity, r.revenue_cents, r.orders) for r in report] == [
        (T0.date(), "tee-m", 2, 3000, 1),
        (T0.date(), "ticket-2027", 1, 4000, 1),
        ((T0 + DAY).date(), "tee-m", 2, 3000, 1),
        ((T0 + DAY).date(), "ticket-2027", 1, 4000, 1),
    ]
    assert await views.sales(T0.date() - DAY, T0.date() - DAY) == []


async def test_saga_lists_running_failed_and_stuck_newest_first(database):
    now = T0
    long_ago = now - STUCK_OVERDUE - timedelta(seconds=1)
    soon = now + timedelta(seconds=30)
    # (status, deadline, attempt) of each saga, oldest first (order ids are time-ordered).
    rows_in = {
        "running": (None, soon, 1),
        "overdue": (None, long_ago, 1),
        "resent": (None, soon, STUCK_ATTEMPTS),
        "just_late": (None, now - timedelta(seconds=5), 1),
        "failed": ("FAILED", None, None),
        "failed_compensating": ("FAILED", long_ago, 9),
        "confirmed": ("CONFIRMED", None, None),
    }
    ids = {name: str(new_id()) for name in rows_in}
    async with database.transaction() as conn:
        await conn.execute(
            sagas.insert(),
            [
                {
                    "order_id": ids[name],
                    "data": {},
                    "version": 1,
                    "phase": "running" if status is None else "finished",
                    "status": status,
                    "deadline": deadline,
                    "attempt": attempt,
                    "created_at": now,
                    "updated_at": now,
                }
                for name, (status, deadline, attempt) in rows_in.items()
            ],
        )
    views = OrderViews(
        database,
        SqlOrderSummaries(),
        SqlSales(),
        SqlSagaOverviews(),
        SqlTimeline(),
        FrozenClock(now),
    )

    async def names(which: SagaFilter, after: str | None = None, limit: int = 10) -> list[str]:
        by_id = {order_id: name for name, order_id in ids.items()}
        return [by_id[s.order_id] for s in await views.sagas(which, after, limit)]

    assert await names(SagaFilter.RUNNING) == ["just_late", "resent", "overdue", "running"]
    # A saga that ended but still resends a late success's compensation needs a person too.
    assert await names(SagaFilter.STUCK) == ["failed_compensating", "resent", "overdue"]
    assert await names(SagaFilter.FAILED) == ["failed_compensating", "failed"]
    assert await names(SagaFilter.RUNNING, limit=2) == ["just_late", "resent"]
    assert await names(SagaFilter.RUNNING, after=ids["resent"], limit=2) == ["overdue", "running"]
    assert await names(SagaFilter.STUCK, limit=1) == ["failed_compensating"]
    [overdue] = await views.sagas(SagaFilter.STUCK, ids["resent"], 10)
    assert (overdue.deadline, overdue.attempt, overdue.status) == (long_ago, 1, None)
    assert (overdue.phase, overdue.created_at) == ("running", now)
