"""Reads: one global order, as-of reads, snapshots, upcasting."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from support.eventstore import events
from townhall.platform.eventstore import NO_STREAM, Aggregates, NewEvent, SnapshotPolicy


async def test_read_all_interleaves_streams_in_one_global_order_page_by_page(store):
    await store.append("order-1", events("A1"), expected_version=NO_STREAM)
    await store.append("order-2", events("B1", "B2"), expected_version=NO_STREAM)
    await store.append("order-1", events("A2"), expected_version=1)
    first = await store.read_all(from_position=0, limit=3)
    rest = await store.read_all(from_position=first[-1].position, limit=3)
    assert [(e.position, e.type) for e in first + rest] == [
        (1, "A1"),
        (2, "B1"),
        (3, "B2"),
        (4, "A2"),
    ]
    assert await store.read_all(from_position=4) == []
    assert await store.head_position() == 4


async def test_read_stream_from_a_version_returns_only_later_events(store):
    await store.append("order-1", events("A", "B", "C"), expected_version=NO_STREAM)
    assert [e.type for e in await store.read_stream("order-1", from_version=1)] == ["B", "C"]
    assert await store.stream_version("order-1") == 3
    assert await store.stream_version("order-404") == 0


async def test_a_stream_read_as_of_a_time_shows_only_what_was_recorded_by_then(store, clock):
    await store.append("order-1", events("Placed"), expected_version=NO_STREAM)
    placed_at = clock.now()
    clock.advance(hours=1)
    await store.append("order-1", events("Paid"), expected_version=1)
    clock.advance(hours=1)
    await store.append("order-1", events("Shipped"), expected_version=2)
    as_of = await store.read_stream("order-1", until=placed_at + timedelta(minutes=90))
    assert [e.type for e in as_of] == ["Placed", "Paid"]
    assert [e.type for e in await store.read_stream("order-1", until=placed_at)] == ["Placed"]
    before = placed_at - timedelta(seconds=1)
    assert await store.read_stream("order-1", until=before) == []


def _count(state: dict, event) -> dict:
    return {"count": state["count"] + 1, "last": event.type}


async def test_an_aggregate_loads_from_its_last_snapshot_plus_later_events(store):
    aggregates = Aggregates(
        store,
        initial=lambda: {"count": 0, "last": None},
        evolve=_count,
        policy=SnapshotPolicy(every=100, per_type={"order": 3}),
    )
    loaded = await aggregates.load("order-1")
    state = loaded.state
    for n in range(7):
        state = _count(state, NewEvent(f"E{n}", {}))
        await aggregates.save("order-1", loaded, [NewEvent(f"E{n}", {})], state)
        loaded = await aggregates.load("order-1")
        assert loaded.state == state
    snapshot = await store.load_snapshot("order-1")
    assert snapshot is not None and snapshot.version == 6
    assert snapshot.state == {"count": 6, "last": "E5"}
    assert (loaded.version, loaded.replayed) == (7, 1)  # the snapshot at 6, then event 7


async def test_an_aggregate_of_a_type_without_snapshots_replays_every_event(store):
    aggregates = Aggregates(
        store,
        initial=lambda: {"count": 0, "last": None},
        evolve=_count,
        policy=SnapshotPolicy(every=0),
    )
    await store.append("cart-1", events("A", "B", "C"), expected_version=NO_STREAM)
    loaded = await aggregates.load("cart-1")
    assert (loaded.state["count"], loaded.replayed) == (3, 3)
    assert await store.load_snapshot("cart-1") is None


async def test_a_snapshot_of_another_state_schema_is_ignored(store):
    await store.append("order-1", events("A", "B"), expected_version=NO_STREAM)
    await store.save_snapshot("order-1", 2, {"stale": True}, schema_version=1)
    aggregates = Aggregates(
        store, initial=lambda: {"count": 0, "last": None}, evolve=_count, schema_version=2
    )
    loaded = await aggregates.load("order-1")
    assert loaded.state == {"count": 2, "last": "B"}


async def test_an_as_of_load_ignores_snapshots_and_replays_to_that_time(store, clock):
    aggregates = Aggregates(
        store,
        initial=lambda: {"count": 0, "last": None},
        evolve=_count,
        policy=SnapshotPolicy(every=1),
    )
    loaded = await aggregates.load("order-1")
    await aggregates.save("order-1", loaded, events("A"), {"count": 1, "last": "A"})
    then = clock.now()
    clock.advance(minutes=5)
    loaded = await aggregates.load("order-1")
    await aggregates.save("order-1", loaded, events("B"), {"count": 2, "last": "B"})
    past = await aggregates.load("order-1", until=then)
    assert (past.state, past.version) == ({"count": 1, "last": "A"}, 1)


async def test_events_written_at_an_old_schema_are_upcast_when_read(store, upcasters):
    await store.append(
        "order-1", [NewEvent("OrderPlaced", {"amount": 12})], expected_version=NO_STREAM
    )
    upcasters.register("OrderPlaced", 1, lambda d: {"total": d["amount"]})
    upcasters.register("OrderPlaced", 2, lambda d: {**d, "currency": "EUR"})
    await store.append("order-1", [NewEvent("OrderPlaced", {"total": 5, "currency": "USD"})])
    recorded = await store.read_stream("order-1")
    assert [(e.schema_version, dict(e.data)) for e in recorded] == [
        (3, {"total": 12, "currency": "EUR"}),
        (3, {"total": 5, "currency": "USD"}),
    ]
    assert [dict(e.data) for e in await store.read_all()] == [dict(e.data) for e in recorded]


@pytest.mark.parametrize("bad", ["2026-01-01T00:00:00"])
async def test_a_naive_until_is_refused(store, bad):
    from datetime import datetime

    with pytest.raises(Exception, match="naive"):
        await store.read_stream("order-1", until=datetime.fromisoformat(bad))


async def test_an_aggregate_loaded_inside_a_transaction_reads_only_on_that_connection(
    database_url,
):
    """A handler holding a transaction loads its aggregate on it: the snapshot is not read
    on a second connection, which a full pool (no overflow) would never hand out."""
    from townhall.platform.db import Database
    from townhall.platform.eventstore import connect

    database = Database(database_url, pool_size=1)
    store = await connect(database, migrate=True)
    try:
        aggregates = Aggregates(
            store,
            initial=lambda: {"count": 0, "last": None},
            evolve=_count,
            policy=SnapshotPolicy(every=100, per_type={"order": 2}),
        )
        loaded = await aggregates.load("order-1")
        state = loaded.state
        for n in range(3):
            state = _count(state, NewEvent(f"E{n}", {}))
            await aggregates.save("order-1", loaded, [NewEvent(f"E{n}", {})], state)
            loaded = await aggregates.load("order-1")
        async with database.transaction() as conn:
            inside = await asyncio.wait_for(aggregates.load("order-1", conn=conn), 5)
        assert (inside.state, inside.version) == (state, 3)
    finally:
        await store.close()
        await database.dispose()
