"""Appends: expected versions, atomicity, joining a caller's transaction, concurrency."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from support.eventstore import events, reject_events_of_type_boom
from townhall.platform.eventstore import ANY, NO_STREAM, NewEvent, VersionConflict


async def test_a_new_stream_starts_at_version_one_and_counts_up_without_gaps(store):
    assert await store.append("order-1", events("A", "B"), expected_version=NO_STREAM) == 2
    assert await store.append("order-1", events("C"), expected_version=2) == 3
    recorded = await store.read_stream("order-1")
    assert [(e.version, e.type) for e in recorded] == [(1, "A"), (2, "B"), (3, "C")]
    assert [e.position for e in recorded] == [1, 2, 3]


async def test_recorded_events_carry_data_metadata_ids_and_time(store, clock):
    event = NewEvent(
        type="OrderPlaced",
        data={"total": 42, "lines": [{"sku": "t-shirt", "qty": 2}]},
        metadata={"correlation_id": "c-1", "causation_id": "m-9"},
    )
    await store.append("order-7", [event], expected_version=NO_STREAM)
    [recorded] = await store.read_stream("order-7")
    assert recorded.stream_id == "order-7"
    assert recorded.data == {"total": 42, "lines": [{"sku": "t-shirt", "qty": 2}]}
    assert recorded.correlation_id == "c-1"
    assert recorded.causation_id == "m-9"
    assert recorded.recorded_at == clock.now()
    assert recorded.id.version == 7


async def test_a_stale_expected_version_raises_naming_stream_expected_and_actual(store):
    await store.append("order-1", events("A", "B"), expected_version=NO_STREAM)
    with pytest.raises(VersionConflict) as raised:
        await store.append("order-1", events("C"), expected_version=1)
    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == (
        "order-1",
        1,
        2,
    )
    assert "order-1" in str(raised.value)
    assert [e.type for e in await store.read_stream("order-1")] == ["A", "B"]
    assert await store.head_position() == 2


async def test_no_stream_conflicts_when_the_stream_exists(store):
    await store.append("order-1", events("A"), expected_version=NO_STREAM)
    with pytest.raises(VersionConflict) as raised:
        await store.append("order-1", events("B"), expected_version=NO_STREAM)
    assert raised.value.expected is NO_STREAM
    assert raised.value.actual == 1


async def test_any_appends_whatever_the_version(store):
    await store.append("order-1", events("A"), expected_version=ANY)
    assert await store.append("order-1", events("B"), expected_version=ANY) == 2


async def test_a_multi_event_append_is_all_or_nothing(store):
    await reject_events_of_type_boom(store.database)
    with pytest.raises(DBAPIError):
        await store.append("order-1", events("A", "Boom", "C"), expected_version=NO_STREAM)
    assert await store.read_stream("order-1") == []
    assert await store.head_position() == 0
    # ... and the positions it took were given back: the next event gets position 1.
    await store.append("order-1", events("A"), expected_version=NO_STREAM)
    assert [e.position for e in await store.read_all()] == [1]


async def test_an_append_joins_the_callers_transaction(store):
    db = store.database
    async with db.transaction() as conn:
        await conn.execute(text("CREATE TABLE outbox_test (body TEXT)"))
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await store.append("order-1", events("A"), expected_version=NO_STREAM, conn=conn)
            await conn.execute(text("INSERT INTO outbox_test VALUES ('A')"))
            raise RuntimeError("the use case fails after appending")
    assert await store.read_stream("order-1") == []
    async with db.transaction() as conn:
        await store.append("order-1", events("A"), expected_version=NO_STREAM, conn=conn)
        await conn.execute(text("INSERT INTO outbox_test VALUES ('A')"))
    assert [e.type for e in await store.read_stream("order-1")] == ["A"]
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox_test"))).scalar_one() == 1


async def test_a_conflict_inside_a_callers_transaction_leaves_no_hole(store):
    await store.append("order-1", events("A"), expected_version=NO_STREAM)
    async with store.database.transaction() as conn:
        with pytest.raises(VersionConflict):
            await store.append("order-1", events("B", "C"), expected_version=0, conn=conn)
        await store.append("order-2", events("X"), expected_version=NO_STREAM, conn=conn)
    assert [e.position for e in await store.read_all()] == [1, 2]


async def test_of_concurrent_appends_at_the_same_version_exactly_one_wins(store):
    await store.append("order-1", events("Created"), expected_version=NO_STREAM)

    async def attempt(n: int) -> str:
        try:
            await store.append("order-1", events(f"Try{n}"), expected_version=1)
        except VersionConflict as conflict:
            assert conflict.actual == 2
            return "conflict"
        return "won"

    outcomes = await asyncio.gather(*(attempt(n) for n in range(8)))
    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
    recorded = await store.read_stream("order-1")
    assert [e.version for e in recorded] == [1, 2]
    assert [e.position for e in await store.read_all()] == [1, 2]


async def test_an_empty_append_checks_the_version_and_writes_nothing(store):
    assert await store.append("order-1", [], expected_version=NO_STREAM) == 0
    with pytest.raises(VersionConflict):
        await store.append("order-1", [], expected_version=3)
    assert await store.head_position() == 0


async def test_positions_stay_gapless_across_every_append_path_and_a_rollback(store):
    await store.append("a", events("A1", "A2"), expected_version=NO_STREAM)  # the store's own
    async with store.database.transaction() as conn:  # a caller's transaction
        await store.append("b", events("B1"), expected_version=NO_STREAM, conn=conn)
    with pytest.raises(RuntimeError):
        async with store.database.transaction() as conn:  # rolled back: takes no position
            await store.append("c", events("C1", "C2"), expected_version=NO_STREAM, conn=conn)
            raise RuntimeError("the use case fails after appending")
    await asyncio.gather(
        store.append("a", events("A3"), expected_version=2),
        store.append("d", events("D1", "D2"), expected_version=NO_STREAM),
    )
    recorded = await store.read_all()
    assert [e.position for e in recorded] == [1, 2, 3, 4, 5, 6]
    assert [e.type for e in recorded[:3]] == ["A1", "A2", "B1"]
    assert sorted(e.type for e in recorded[3:]) == ["A3", "D1", "D2"]
    assert await store.head_position() == 6


async def test_concurrent_any_appends_to_one_stream_never_conflict(store):
    """Many ANY appends race for one stream, all queued behind a caller's open transaction
    that appends to it too: each one lands, none raises a version conflict."""
    appenders, rounds = 40, 10
    started = asyncio.Event()

    async def appender(n: int) -> list[int]:
        await started.wait()
        return [
            await store.append("hot", events(f"A{n}", f"A{n}"), expected_version=ANY)
            for _ in range(rounds)
        ]

    async with store.database.transaction() as conn:
        await store.append("hot", events("First"), expected_version=ANY, conn=conn)
        tasks = [asyncio.create_task(appender(n)) for n in range(appenders)]
        started.set()
        await asyncio.sleep(0.2)  # the appenders read the stream and queue behind this one
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    versions = sorted(v for returned in outcomes for v in returned)
    assert versions == list(range(3, 2 * appenders * rounds + 2, 2))
    recorded = await store.read_stream("hot")
    assert [e.version for e in recorded] == list(range(1, 2 * appenders * rounds + 2))
    assert [e.position for e in await store.read_all(limit=10_000)] == [e.version for e in recorded]
