"""One contract for the `IdempotencyKeys` port, run against the SQL store on SQLite and
PostgreSQL and against the fake the unit tests use: a key is one per (buyer, key), kept only
when its transaction commits, and a second writer of a key has its transaction refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import townhall.orders
from support.order_fakes import MemoryIdempotencyKeys, MemoryTransactions
from support.orders import T0
from support.services import create_database, database_name, drop_database
from townhall.orders.adapters.sql import SqlIdempotencyKeys
from townhall.orders.ports import ConcurrentChange, IdempotencyKeys, KnownKey
from townhall.platform.db import Database
from townhall.platform.migrations import migrate

pytestmark = pytest.mark.timeout(60)

MIGRATIONS = Path(townhall.orders.__file__).parent / "migrations"
KNOWN = KnownKey("fp-1", "00000000-0000-0000-0000-000000000001")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def stores(request, tmp_path) -> AsyncIterator[tuple[Any, IdempotencyKeys]]:
    if request.param == "memory":
        yield MemoryTransactions(), MemoryIdempotencyKeys()
        return
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"
    else:
        name = database_name("o")
        url = await create_database(name)
    database = Database(url)
    await migrate(database, [MIGRATIONS])
    try:
        yield database, SqlIdempotencyKeys()
    finally:
        await database.dispose()
        if name is not None:
            await drop_database(name)


async def find(tx, keys: IdempotencyKeys, buyer: str, key: str) -> KnownKey | None:
    async with tx.connect() as conn:
        return await keys.find(conn, buyer, key)


async def test_a_remembered_key_is_found_for_its_buyer_only(stores):
    tx, keys = stores
    assert await find(tx, keys, "buyer-1", "k1") is None
    async with tx.transaction() as conn:
        await keys.remember(conn, "buyer-1", "k1", KNOWN, T0)
    assert await find(tx, keys, "buyer-1", "k1") == KNOWN
    assert await find(tx, keys, "buyer-2", "k1") is None
    assert await find(tx, keys, "buyer-1", "k2") is None


async def test_a_key_of_a_rolled_back_transaction_is_not_kept(stores):
    tx, keys = stores
    with pytest.raises(RuntimeError):
        async with tx.transaction() as conn:
            await keys.remember(conn, "buyer-1", "k1", KNOWN, T0)
            raise RuntimeError("the order's append failed")
    assert await find(tx, keys, "buyer-1", "k1") is None


async def test_a_second_writer_of_a_key_is_refused_and_the_first_kept(stores):
    tx, keys = stores
    async with tx.transaction() as conn:
        await keys.remember(conn, "buyer-1", "k1", KNOWN, T0)
    other = KnownKey("fp-2", "00000000-0000-0000-0000-000000000002")
    with pytest.raises(ConcurrentChange):
        async with tx.transaction() as conn:
            await keys.remember(conn, "buyer-1", "k1", other, T0)
    assert await find(tx, keys, "buyer-1", "k1") == KNOWN
