import pytest
from sqlalchemy import text

from townhall.platform.db import Database


async def test_a_rolled_back_transaction_writes_nothing(database_url):
    db = Database(database_url)
    try:
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                raise RuntimeError("boom")
        async with db.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await db.dispose()
