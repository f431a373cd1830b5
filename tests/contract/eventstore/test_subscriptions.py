"""Catch-up subscriptions and projections: checkpoints, restarts, live following, rebuild."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from support.eventstore import events
from townhall.platform.eventstore import NO_STREAM, Projection, Projections, connect


async def _create_counts_table(store) -> None:
    async with store.database.transaction() as conn:
        await conn.execute(text("CREATE TABLE sales_counts (type VARCHAR(50) PRIMARY KEY, n INT)"))


async def count_by_type(batch, conn) -> None:
    """A projection in the same database: it writes through the subscription's transaction."""
    for event in batch:
        if event.type == "Poison":
            raise RuntimeError("cannot project this event")
        updated = await conn.execute(
            text("UPDATE sales_counts SET n = n + 1 WHERE type = :t"), {"t": event.type}
        )
        if updated.rowcount == 0:
            await conn.execute(
                text("INSERT INTO sales_counts (type, n) VALUES (:t, 1)"), {"t": event.type}
            )


async def reset_counts(conn) -> None:
    await conn.execute(text("DELETE FROM sales_counts"))


async def _counts(store) -> dict[str, int]:
    async with store.database.connect() as conn:
        rows = await conn.execute(text("SELECT type, n FROM sales_counts"))
        return {row.type: row.n for row in rows}


async def test_a_subscription_reads_history_in_batches_and_restarts_from_its_checkpoint(store):
    await _create_counts_table(store)
    for n in range(5):
        await store.append(f"order-{n}", events("Placed", "Paid"), expected_version=NO_STREAM)
    seen_batches: list[int] = []

    async def handler(batch, conn):
        seen_batches.append(len(batch))
        await count_by_type(batch, conn)

    assert await store.subscribe("sales", handler, batch=4).catch_up() == 10
    assert seen_batches == [4, 4, 2]
    assert await store.checkpoints() == {"sales": 10}
    # A new subscription object (a restarted process) resumes after the checkpoint.
    await store.append("order-9", events("Placed"), expected_version=NO_STREAM)
    assert await store.subscribe("sales", handler, batch=4).catch_up() == 1
    assert await _counts(store) == {"Placed": 6, "Paid": 5}


async def test_a_failing_batch_moves_neither_the_projection_nor_the_checkpoint(store):
    await _create_counts_table(store)
    await store.append("order-1", events("Placed", "Poison", "Paid"), expected_version=NO_STREAM)
    subscription = store.subscribe("sales", count_by_type, batch=10)
    with pytest.raises(RuntimeError):
        await subscription.catch_up()
    # "Placed" was projected inside the failed transaction: it rolled back with it.
    assert await _counts(store) == {}
    assert await store.checkpoints() == {"sales": 0}


async def test_a_live_subscription_wakes_on_an_append_without_waiting_for_a_poll(store):
    await _create_counts_table(store)
    subscription = store.subscribe("sales", count_by_type, poll_interval=30)
    async with subscription:
        await asyncio.sleep(0.1)  # caught up and waiting
        started = time.monotonic()
        await store.append("order-1", events("Placed"), expected_version=NO_STREAM)
        await subscription.wait_for(1, max_wait=5)
        assert time.monotonic() - started < 2
        async with store.database.transaction() as conn:  # an append in a caller's transaction
            await store.append("order-2", events("Paid"), expected_version=NO_STREAM, conn=conn)
        await subscription.wait_for(2, max_wait=5)
    assert await _counts(store) == {"Placed": 1, "Paid": 1}


async def test_on_postgresql_a_subscriber_wakes_on_another_processs_append(postgres_url):
    store = await connect(postgres_url, poll_interval=30)
    other = await connect(postgres_url, migrate=False)  # its own engine, as another process
    try:
        await _create_counts_table(store)
        subscription = store.subscribe("sales", count_by_type)
        async with subscription:
            await asyncio.sleep(0.3)  # caught up and listening
            await other.append("order-1", events("Placed"), expected_version=NO_STREAM)
            await subscription.wait_for(1, max_wait=5)
    finally:
        await other.close()
        await store.close()


async def test_a_subscriber_in_another_process_catches_new_events_by_polling(database_url):
    store = await connect(database_url, poll_interval=0.1)
    other = await connect(database_url, migrate=False)
    try:
        await _create_counts_table(store)
        subscription = store.subscribe("sales", count_by_type)
        async with subscription:
            await asyncio.sleep(0.2)
            await other.append("order-1", events("Placed"), expected_version=NO_STREAM)
            await subscription.wait_for(1, max_wait=5)
    finally:
        await other.close()
        await store.close()


async def test_rebuild_drops_state_and_checkpoint_then_replays_from_zero(store):
    await _create_counts_table(store)
    registry = Projections(store)
    registry.register(Projection("sales", count_by_type, reset_counts, batch=3))
    await store.append("order-1", events("Placed", "Paid"), expected_version=NO_STREAM)
    await registry.subscription("sales").catch_up()
    # Corrupt the read model, as a bug in an old projection version would.
    async with store.database.transaction() as conn:
        await conn.execute(text("UPDATE sales_counts SET n = 99"))
    await store.append("order-2", events("Placed"), expected_version=NO_STREAM)
    [status] = await registry.status()
    assert (status.name, status.checkpoint, status.head, status.lag) == ("sales", 2, 3, 1)
    assert await registry.rebuild("sales") == 3
    assert await _counts(store) == {"Placed": 2, "Paid": 1}
    [status] = await registry.status()
    assert (status.checkpoint, status.lag) == (3, 0)


async def test_two_runners_of_one_subscription_apply_each_event_once(store):
    await _create_counts_table(store)
    for n in range(20):
        await store.append(f"order-{n}", events("Placed"), expected_version=NO_STREAM)
    first = store.subscribe("sales", count_by_type, batch=3)
    second = store.subscribe("sales", count_by_type, batch=3)
    await asyncio.gather(first.catch_up(), second.catch_up())
    assert await _counts(store) == {"Placed": 20}
    assert await store.checkpoints() == {"sales": 20}
