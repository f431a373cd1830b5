"""The store's own hot paths keep the contract: queued (group-committed) appends, lazy reads."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import DBAPIError

from support.eventstore import events, reject_events_of_type_boom
from townhall.platform.eventstore import NO_STREAM, VersionConflict


async def _appends_while_the_write_lock_is_held(store, *appends):
    """Start `appends` while a caller's transaction holds the lock, so they queue, then commit."""
    async with store.database.transaction() as conn:
        await store.append("holder", events("Hold"), conn=conn)
        tasks = [asyncio.create_task(append) for append in appends]
        await asyncio.sleep(0.2)
        if store.database.is_sqlite:  # SQLite: all wait for the lock, then go as one batch
            assert not any(task.done() for task in tasks)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_queued_appends_commit_together_and_a_stale_one_writes_nothing(store):
    await store.append("order-1", events("A"), expected_version=NO_STREAM)
    outcomes = await _appends_while_the_write_lock_is_held(
        store,
        store.append("order-2", events("X", "Y"), expected_version=NO_STREAM),
        store.append("order-1", events("Stale"), expected_version=0),
        store.append("order-1", events("B"), expected_version=1),
        store.append("order-3", events("Z"), expected_version=NO_STREAM),
    )
    assert outcomes[0] == 2 and outcomes[2] == 2 and outcomes[3] == 1
    assert isinstance(outcomes[1], VersionConflict) and outcomes[1].actual == 1
    assert [e.type for e in await store.read_stream("order-1")] == ["A", "B"]
    positions = [e.position for e in await store.read_all()]
    assert positions == list(range(1, len(positions) + 1))  # no hole where Stale was refused


async def test_a_queued_append_the_database_refuses_leaves_the_others_committed(store):
    await reject_events_of_type_boom(store.database)
    outcomes = await _appends_while_the_write_lock_is_held(
        store,
        store.append("order-1", events("A"), expected_version=NO_STREAM),
        store.append("order-2", events("Ok", "Boom"), expected_version=NO_STREAM),
        store.append("order-3", events("C"), expected_version=NO_STREAM),
    )
    assert outcomes[0] == 1 and outcomes[2] == 1
    assert isinstance(outcomes[1], DBAPIError)
    assert await store.read_stream("order-2") == []
    positions = [e.position for e in await store.read_all()]
    assert positions == list(range(1, len(positions) + 1))


async def test_lazily_read_events_are_upcast_when_their_data_is_first_read(store, upcasters):
    await store.append("order-1", events("OrderPlaced", amount=3), expected_version=NO_STREAM)
    upcasters.register("OrderPlaced", 1, lambda data: {"total": data["amount"]})
    for read in (await store.read_stream("order-1"), await store.read_all()):
        [recorded] = read
        assert recorded.schema_version == 2
        assert recorded.data == {"total": 3}
        assert recorded.data is recorded.data  # decoded once


async def test_a_missing_upcaster_fails_when_the_data_is_read(store, upcasters):
    await store.append("order-1", events("OrderPlaced", amount=3), expected_version=NO_STREAM)
    upcasters.register("OrderPlaced", 2, lambda data: data)  # no step from v1
    [recorded] = await store.read_all()
    assert recorded.type == "OrderPlaced"  # what needs no decoding still reads
    with pytest.raises(LookupError):
        _ = recorded.data
