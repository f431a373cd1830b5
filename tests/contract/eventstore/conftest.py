"""Fixtures for the event store contract suite: one store per test, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from townhall.platform.clock import FrozenClock
from townhall.platform.eventstore import SqlEventStore, Upcasters, connect


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def upcasters() -> Upcasters:
    return Upcasters()


@pytest.fixture
async def store(database_url, clock, upcasters) -> AsyncIterator[SqlEventStore]:
    store = await connect(database_url, clock=clock, upcasters=upcasters, poll_interval=0.2)
    yield store
    await store.close()


@pytest.fixture
async def migrated_url(database_url) -> str:
    """A database URL with the event store's tables already created."""
    store = await connect(database_url)
    await store.close()
    return database_url
