"""One recorder class per database, and what a caller's transaction handle must be."""

from __future__ import annotations

import pytest

from support.eventstore import events
from townhall.platform.eventstore import (
    NO_STREAM,
    PostgresEventStore,
    SqlEventStore,
    SqliteEventStore,
)


async def test_connect_builds_the_recorder_of_the_database(store):
    expected = SqliteEventStore if store.database.is_sqlite else PostgresEventStore
    assert type(store) is expected
    assert isinstance(store, SqlEventStore)


async def test_a_transaction_handle_that_is_not_the_databases_is_refused_and_writes_nothing(
    store,
):
    with pytest.raises(TypeError, match=r"Database\.transaction"):
        await store.append("order-1", events("A"), expected_version=NO_STREAM, conn=object())
    with pytest.raises(TypeError, match=r"Database\.transaction"):
        await store.read_all(conn=object())
    assert await store.stream_version("order-1") == 0
    assert await store.head_position() == 0
