"""One contract for the orders store ports (the saga store with its durable timers, the saga
timeline, the order repository on the event store), run against the SQL stores on SQLite and
PostgreSQL and against the in-memory fakes the unit tests use: the fakes behave as the real
stores do, or this fails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import townhall.orders
from support.order_fakes import MemoryOrders, MemorySagas, MemoryTimeline, MemoryTransactions
from support.orders import ADDRESS, CARD, LINES, T0, placed_order
from support.services import create_database, database_name, drop_database
from townhall.inventory import events as inventory
from townhall.orders.adapters.eventstore import EventStoreOrders
from townhall.orders.adapters.sql import SqlSagaStore, SqlTimeline
from townhall.orders.domain import (
    FailureReason,
    OrderFailed,
    OrderPlaced,
    OrderStatus,
    PaymentCaptured,
    PaymentRefunded,
    SagaMode,
    StockReleased,
    StockReserved,
    fold,
    place,
    stream_id,
)
from townhall.orders.ports import (
    ConcurrentChange,
    OrderRepository,
    SagaStore,
    Timeline,
    TimelineEntry,
)
from townhall.orders.saga import Saga, handle, start
from townhall.platform.clock import FrozenClock
from townhall.platform.db import Database
from townhall.platform.eventstore import SqlEventStore
from townhall.platform.eventstore import connect as connect_eventstore
from townhall.platform.migrations import migrate

pytestmark = pytest.mark.timeout(60)

MIGRATIONS = Path(townhall.orders.__file__).parent / "migrations"


@dataclass
class Stores:
    kind: str
    tx: Any  # Transactions
    sagas: SagaStore
    timeline: Timeline
    orders: OrderRepository
    eventstore: SqlEventStore | None = None


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def stores(request, tmp_path) -> AsyncIterator[Stores]:
    if request.param == "memory":
        yield Stores(
            "memory", MemoryTransactions(), MemorySagas(), MemoryTimeline(), MemoryOrders()
        )
        return
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"
    else:
        name = database_name("o")
        url = await create_database(name)
    database = Database(url)
    await migrate(database, [MIGRATIONS])
    eventstore = await connect_eventstore(database)
    try:
        yield Stores(
            request.param,
            database,
            SqlSagaStore(),
            SqlTimeline(),
            EventStoreOrders(eventstore, snapshot_every=3),
            eventstore,
        )
    finally:
        await eventstore.close()
        await database.dispose()
        if name is not None:
            await drop_database(name)


def new_saga(clock: FrozenClock | None = None) -> tuple[str, Saga]:
    clock = clock or FrozenClock(T0)
    order = placed_order(clock)
    return str(order.id), start(order, CARD, clock).saga


async def add(stores: Stores, order_id: str, saga: Saga) -> None:
    async with stores.tx.transaction() as conn:
        await stores.sagas.add(conn, order_id, saga, T0)


async def get(stores: Stores, order_id: str):
    async with stores.tx.connect() as conn:
        return await stores.sagas.get(conn, order_id)


# --- the saga store -------------------------------------------------------------------------


async def test_an_added_saga_reads_back_equal_at_version_1(stores):
    order_id, saga = new_saga()
    await add(stores, order_id, saga)
    stored = await get(stores, order_id)
    assert stored is not None
    assert (stored.order_id, stored.saga, stored.version) == (order_id, saga, 1)
    assert await get(stores, str(uuid.uuid4())) is None


async def test_a_save_at_the_version_read_replaces_the_saga_and_bumps_the_version(stores):
    clock = FrozenClock(T0)
    order_id, saga = new_saga(clock)
    await add(stores, order_id, saga)
    stored = await get(stores, order_id)
    moved = handle(saga, inventory.StockReserved(order_id), clock).saga
    async with stores.tx.transaction() as conn:
        saved = await stores.sagas.save(conn, stored, moved, T0)
    assert saved.version == 2
    again = await get(stores, order_id)
    assert (again.saga, again.version) == (moved, 2)


async def test_a_save_at_a_stale_version_is_refused_and_writes_nothing(stores):
    clock = FrozenClock(T0)
    order_id, saga = new_saga(clock)
    await add(stores, order_id, saga)
    stale = await get(stores, order_id)
    moved = handle(saga, inventory.StockReserved(order_id), clock).saga
    async with stores.tx.transaction() as conn:
        await stores.sagas.save(conn, stale, moved, T0)
    other = handle(saga, inventory.StockReservationFailed(order_id, ("tee-m",)), clock).saga
    with pytest.raises(ConcurrentChange):
        async with stores.tx.transaction() as conn:
            await stores.sagas.save(conn, stale, other, T0)
    current = await get(stores, order_id)
    assert (current.saga, current.version) == (moved, 2)


async def test_two_writers_of_one_saga_at_once_one_wins_the_other_is_refused(stores):
    clock = FrozenClock(T0)
    order_id, saga = new_saga(clock)
    await add(stores, order_id, saga)
    read = await get(stores, order_id)
    reserved = handle(saga, inventory.StockReserved(order_id), clock).saga
    failed = handle(saga, inventory.StockReservationFailed(order_id), clock).saga

    async def write(new: Saga) -> None:
        async with stores.tx.transaction() as conn:
            await stores.sagas.save(conn, read, new, T0)
            await asyncio.sleep(0.05)  # hold the write a moment: the other one overlaps it

    results = await asyncio.gather(write(reserved), write(failed), return_exceptions=True)
    refused = [r for r in results if isinstance(r, ConcurrentChange)]
    assert len(refused) == 1 and results.count(None) == 1
    current = await get(stores, order_id)
    assert current.version == 2
    assert current.saga == (reserved if results[0] is None else failed)


async def test_a_rolled_back_add_leaves_no_saga(stores):
    order_id, saga = new_saga()
    with pytest.raises(RuntimeError):
        async with stores.tx.transaction() as conn:
            await stores.sagas.add(conn, order_id, saga, T0)
            raise RuntimeError("the rest of the unit of work failed")
    assert await get(stores, order_id) is None


async def test_due_lists_the_sagas_whose_deadline_passed_earliest_first(stores):
    clock = FrozenClock(T0)
    sagas = []
    for _ in range(3):
        sagas.append(new_saga(clock))
        clock.advance(seconds=1)
    for order_id, saga in reversed(sagas):
        await add(stores, order_id, saga)
    first_deadline = sagas[0][1].waiting.deadline
    async with stores.tx.connect() as conn:
        assert await stores.sagas.due(conn, first_deadline - timedelta(microseconds=1), 10) == []
        assert await stores.sagas.due(conn, first_deadline, 10) == [sagas[0][0]]
        later = first_deadline + timedelta(seconds=5)
        assert await stores.sagas.due(conn, later, 10) == [order_id for order_id, _ in sagas]
        assert await stores.sagas.due(conn, later, 2) == [sagas[0][0], sagas[1][0]]


async def test_a_saga_waiting_for_nothing_or_later_is_not_due(stores):
    clock = FrozenClock(T0)
    order_id, saga = new_saga(clock)
    await add(stores, order_id, saga)
    stored = await get(stores, order_id)
    finished = replace(saga, waiting=None)
    async with stores.tx.transaction() as conn:
        stored = await stores.sagas.save(conn, stored, finished, T0)
    far = T0 + timedelta(days=1)
    async with stores.tx.connect() as conn:
        assert await stores.sagas.due(conn, far, 10) == []
    async with stores.tx.transaction() as conn:
        assert await stores.sagas.claim_due(conn, order_id, far) is None


async def test_claim_due_gives_a_due_saga_and_nothing_else(stores):
    order_id, saga = new_saga()
    await add(stores, order_id, saga)
    deadline = saga.waiting.deadline
    async with stores.tx.transaction() as conn:
        assert await stores.sagas.claim_due(conn, order_id, deadline - timedelta(seconds=1)) is None
        assert await stores.sagas.claim_due(conn, str(uuid.uuid4()), deadline) is None
        claimed = await stores.sagas.claim_due(conn, order_id, deadline)
    assert claimed is not None
    assert (claimed.saga, claimed.version) == (saga, 1)


async def test_a_saga_claimed_by_an_open_transaction_is_skipped_by_another(stores):
    if stores.kind == "sqlite":
        pytest.skip("SQLite has one writer: a second transaction waits for the first to end")
    order_id, saga = new_saga()
    await add(stores, order_id, saga)
    deadline = saga.waiting.deadline
    async with stores.tx.transaction() as first:
        assert await stores.sagas.claim_due(first, order_id, deadline) is not None
        async with stores.tx.transaction() as second:
            claim = stores.sagas.claim_due(second, order_id, deadline)
            assert await asyncio.wait_for(claim, 5) is None  # skipped, not waited for
    async with stores.tx.transaction() as again:
        assert await stores.sagas.claim_due(again, order_id, deadline) is not None


# --- the timeline ---------------------------------------------------------------------------


def entry(order_id: str, outcome: str, at_ms: int) -> TimelineEntry:
    return TimelineEntry(
        order_id=order_id,
        at=T0 + timedelta(milliseconds=at_ms),
        module="inventory",
        message_type="inventory.StockReserved",
        message_id=str(uuid.uuid4()),
        correlation_id=order_id,
        causation_id=str(uuid.uuid4()),
        outcome=outcome,
        detail=None if outcome != "refused" else "the order's shipment exists",
    )


async def test_the_timeline_gives_an_orders_entries_in_the_order_recorded(stores):
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    first = [entry(mine, "applied", 5), entry(other, "applied", 1)]
    second = [entry(mine, "duplicate", 3), entry(mine, "refused", 4)]
    for batch in (first, second):
        async with stores.tx.transaction() as conn:
            await stores.timeline.record(conn, batch)
    async with stores.tx.connect() as conn:
        assert await stores.timeline.of(conn, mine) == [first[0], *second]
        assert await stores.timeline.of(conn, str(uuid.uuid4())) == []


# --- orders in the event store ----------------------------------------------------------------


def placed_event(clock: FrozenClock | None = None) -> OrderPlaced:
    return place(
        buyer_id="buyer-1",
        lines=LINES,
        currency="EUR",
        shipping_address=ADDRESS,
        saga_mode=SagaMode.ORCHESTRATION,
        clock=clock or FrozenClock(T0),
    )


def at(ms: int):
    return T0 + timedelta(milliseconds=ms)


async def test_an_order_appended_as_events_loads_as_its_fold(stores):
    placed = placed_event()
    order_id = placed.order_id
    batches = [
        [placed],
        [StockReserved(at=at(1))],
        [
            PaymentCaptured(at=at(2), payment_id="p-1", amount_cents=7000),
            PaymentRefunded(at=at(3), payment_id="p-1", amount_cents=7000),
        ],
        [StockReleased(at=at(4)), OrderFailed(at=at(5), reason=FailureReason.PAYMENT_TIMEOUT)],
    ]
    async with stores.tx.connect() as conn:
        assert await stores.orders.load(conn, order_id) is None
        assert await stores.orders.history(conn, order_id) == []
    events: list = []
    for batch in batches:
        async with stores.tx.transaction() as conn:
            order = await stores.orders.load(conn, order_id)
            await stores.orders.append(
                conn, order, batch, correlation_id=str(order_id), causation_id=f"c-{len(events)}"
            )
        events += batch
    async with stores.tx.connect() as conn:
        loaded = await stores.orders.load(conn, order_id)
        history = await stores.orders.history(conn, order_id)
    assert loaded == fold(events)
    assert (loaded.version, loaded.status) == (6, OrderStatus.FAILED)
    assert [stored.event for stored in history] == events
    assert [stored.version for stored in history] == [1, 2, 3, 4, 5, 6]
    assert [(s.correlation_id, s.causation_id) for s in history] == [
        (str(order_id), cause) for cause in ["c-0", "c-1", "c-2", "c-2", "c-4", "c-4"]
    ]
    if stores.eventstore is not None:  # every 3 events: the last one is at version 6
        snapshot = await stores.eventstore.load_snapshot(stream_id(order_id))
        assert snapshot is not None and snapshot.version == 6


async def test_an_append_at_a_stale_version_is_refused_and_writes_nothing(stores):
    placed = placed_event()
    order = fold([placed])
    async with stores.tx.transaction() as conn:
        await stores.orders.append(conn, None, [placed])
    reserved = StockReserved(at=at(1000))
    async with stores.tx.transaction() as conn:
        await stores.orders.append(conn, order, [reserved])
    captured = PaymentCaptured(at=at(2000), payment_id="p", amount_cents=1)
    with pytest.raises(ConcurrentChange):
        async with stores.tx.transaction() as conn:
            await stores.orders.append(conn, order, [captured])  # still at version 1
    with pytest.raises(ConcurrentChange):
        async with stores.tx.transaction() as conn:
            await stores.orders.append(conn, None, [placed])  # the stream exists
    async with stores.tx.connect() as conn:
        history = await stores.orders.history(conn, order.id)
    assert [stored.event for stored in history] == [placed, reserved]


async def test_an_order_as_of_a_time_is_the_prefix_of_its_events_up_to_then(stores):
    placed = placed_event()
    order = fold([placed])
    reserved = StockReserved(at=at(1000))
    async with stores.tx.transaction() as conn:
        await stores.orders.append(conn, None, [placed])
    async with stores.tx.transaction() as conn:
        await stores.orders.append(conn, order, [reserved])
    one_us = timedelta(microseconds=1)
    async with stores.tx.connect() as conn:
        before = await stores.orders.as_of(conn, order.id, T0 - one_us)
        at_placing = await stores.orders.as_of(conn, order.id, T0)
        between = await stores.orders.as_of(conn, order.id, reserved.at - one_us)
        after = await stores.orders.as_of(conn, order.id, reserved.at)
    assert before is None
    assert at_placing == between == order
    assert after == fold([placed, reserved]) and after.stock_held


async def test_loading_an_order_in_a_transaction_needs_no_second_connection(postgres_url):
    """With one connection in the pool, held by the handler's transaction, a load that took
    a second one (for the snapshot) would wait for the pool until it timed out."""
    database = Database(postgres_url, pool_size=1)
    await migrate(database, [MIGRATIONS])
    eventstore = await connect_eventstore(database)
    orders = EventStoreOrders(eventstore, snapshot_every=2)
    placed = placed_event()
    order = fold([placed])
    try:
        async with database.transaction() as conn:
            await orders.append(conn, None, [placed, StockReserved(at=at(1))])
        async with database.transaction() as conn:
            loaded = await asyncio.wait_for(orders.load(conn, placed.order_id), 10)
        assert loaded == fold([placed, StockReserved(at=at(1))]) and loaded != order
        assert (await eventstore.load_snapshot(stream_id(placed.order_id))).version == 2
    finally:
        await eventstore.close()
        await database.dispose()
