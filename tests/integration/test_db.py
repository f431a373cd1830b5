import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from townhall.platform.db import DRIVER_POOL_MAX, Database


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


async def test_an_autocommit_statement_is_kept_even_when_a_later_one_fails(database_url):
    """`autocommit()` is for single-statement units: on PostgreSQL each statement commits as
    it runs (no BEGIN/COMMIT round trips); on SQLite the block is one transaction."""
    db = Database(database_url)
    try:
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE a (x INTEGER PRIMARY KEY)"))
        async with db.autocommit() as conn:
            await conn.execute(text("INSERT INTO a VALUES (1)"))
            async with db.connect() as other:  # committed already, on PostgreSQL
                seen = (await other.execute(text("SELECT count(*) FROM a"))).scalar_one()
            assert seen == (1 if db.is_postgresql else 0)
        with pytest.raises(DBAPIError):
            async with db.autocommit() as conn:
                await conn.execute(text("INSERT INTO a VALUES (2)"))
                await conn.execute(text("INSERT INTO a VALUES (1)"))  # duplicate key
        async with db.connect() as conn:
            kept = (await conn.execute(text("SELECT x FROM a ORDER BY x"))).scalars().all()
        assert kept == ([1, 2] if db.is_postgresql else [1])
    finally:
        await db.dispose()


async def test_on_postgresql_a_read_sees_each_commit_and_holds_no_transaction(postgres_url):
    db = Database(postgres_url)
    try:
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE r (x INTEGER)"))
        async with db.connect() as reader:
            assert (await reader.execute(text("SELECT count(*) FROM r"))).scalar_one() == 0
            async with db.transaction() as conn:
                await conn.execute(text("INSERT INTO r VALUES (1)"))
            # The same read connection sees what committed after it was opened.
            assert (await reader.execute(text("SELECT count(*) FROM r"))).scalar_one() == 1
            # ... and, held open, it holds no transaction (nothing for VACUUM or DDL to wait on).
            async with db.connect() as watcher:
                open_transactions = await watcher.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction'"
                    )
                )
                assert open_transactions.scalar_one() == 0
    finally:
        await db.dispose()


async def test_after_postgresql_drops_every_connection_one_unit_of_work_fails_then_all_work(
    postgres_url,
):
    """A restarted server: pooled connections are dead. The first statement on one fails
    (no pre-ping round trip on every checkout); the pool is then renewed as a whole."""
    db = Database(postgres_url, pool_size=4)
    try:

        async def hold(seconds: float) -> None:
            async with db.connect() as conn:
                await conn.execute(text(f"SELECT pg_sleep({seconds})"))

        await asyncio.gather(*(hold(0.05) for _ in range(4)))  # four pooled connections
        async with db.connect() as conn:
            database = (await conn.execute(text("SELECT current_database()"))).scalar_one()
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await admin.close()
        assert killed >= 1
        outcomes = []
        for _ in range(6):
            try:
                async with db.transaction() as conn:
                    await conn.execute(text("SELECT 1"))
                outcomes.append("ok")
            except DBAPIError as exc:
                assert exc.connection_invalidated
                outcomes.append("failed")
        assert outcomes[1:] == ["ok"] * 5  # at most the first fails, on a dead connection
    finally:
        await db.dispose()


# A batch statement of the shape the notification workers run: an UPDATE of rows of one
# channel joined to an array of ids.
_BATCH_UPDATE = text(
    "UPDATE grows AS g SET v = g.v + 1 FROM unnest(CAST(:ids AS integer[])) AS o(id) "
    "WHERE g.id = o.id AND g.channel = :channel"
)
_ROWS_READ = text(
    "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
    "WHERE relname = 'grows'"
)


async def _rows_read_after_growth(url: str, *, custom_plans: bool) -> int:
    """Run the batch statement 10 times on one connection while its table is empty, grow the
    table to 20,000 rows (no ANALYZE), run it once more for 3 ids: how many rows of the table
    that last run read."""
    db = Database(url, custom_plans=custom_plans, pool_size=1)  # one connection, one cache
    try:
        async with db.transaction() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE grows (id INTEGER, channel VARCHAR(16), v INTEGER, "
                    "PRIMARY KEY (id, channel))"
                )
            )
        for _ in range(10):
            async with db.transaction() as conn:
                await conn.execute(_BATCH_UPDATE, {"ids": [1, 2, 3], "channel": "email"})
        async with db.transaction() as conn:
            await conn.execute(
                text("INSERT INTO grows SELECT n, 'email', 0 FROM generate_series(1, 20000) n")
            )
        async with db.transaction() as conn:  # counts of this backend not yet reported
            before = (await conn.execute(_ROWS_READ)).scalar_one()
            await conn.execute(_BATCH_UPDATE, {"ids": [5, 500, 5000], "channel": "email"})
            read = (await conn.execute(_ROWS_READ)).scalar_one() - before
        async with db.transaction() as conn:
            await conn.execute(text("DROP TABLE grows"))
        return read
    finally:
        await db.dispose()


async def test_custom_plans_keep_a_batch_statement_on_the_index_as_its_table_grows(
    postgres_url,
):
    """The trap `custom_plans` avoids, shown both ways: the plan cached while the table was
    empty reads all 20,000 rows to update 3; planned for each run, the statement reads 3."""
    assert await _rows_read_after_growth(postgres_url, custom_plans=False) >= 20_000
    assert await _rows_read_after_growth(postgres_url, custom_plans=True) == 3


async def test_custom_plans_is_a_setting_of_every_connection_and_off_by_default(postgres_url):
    show = text("SHOW plan_cache_mode")
    for custom_plans, expected in ((True, "force_custom_plan"), (False, "auto")):
        db = Database(postgres_url, custom_plans=custom_plans)
        try:
            async with db.connect() as conn:
                assert (await conn.execute(show)).scalar_one() == expected
            assert await db.run_on_driver(show, {}) == [(expected,)]  # the driver path too
        finally:
            await db.dispose()


async def test_a_statement_on_the_driver_path_takes_named_parameters_and_commits_itself(
    postgres_url,
):
    db = Database(postgres_url)
    try:
        assert db.has_driver_path
        async with db.transaction() as conn:
            await conn.execute(text("CREATE TABLE d (x INTEGER PRIMARY KEY, label TEXT)"))
        insert = text(
            "INSERT INTO d SELECT x, :label || x FROM unnest(CAST(:xs AS integer[])) AS x "
            "WHERE :label <> '' RETURNING x, label"
        )
        rows = await db.run_on_driver(insert, {"xs": [2, 1], "label": "n", "unused": 0})
        assert sorted(rows) == [(1, "n1"), (2, "n2")]
        async with db.connect() as conn:  # committed: another connection sees it
            assert (await conn.execute(text("SELECT count(*) FROM d"))).scalar_one() == 2
        # A failed statement is SQLAlchemy's error, and writes nothing of itself.
        with pytest.raises(IntegrityError):
            await db.run_on_driver(insert, {"xs": [3, 1], "label": "m"})
        with pytest.raises(KeyError):  # a parameter the statement names is missing
            await db.run_on_driver(insert, {"xs": [4]})
        assert await db.run_on_driver(text("SELECT x FROM d ORDER BY x"), {}) == [(1,), (2,)]
    finally:
        await db.dispose()


async def test_the_driver_path_is_only_on_postgresql(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    try:
        assert not db.has_driver_path
        with pytest.raises(RuntimeError, match="PostgreSQL"):
            await db.run_on_driver(text("SELECT 1"), {})
    finally:
        await db.dispose()


async def test_the_driver_path_opens_at_most_its_own_few_connections(postgres_url):
    """However many statements run at once, and whatever SQLAlchemy's pool size: the
    connections beside that pool count against PostgreSQL's max_connections too."""
    db = Database(postgres_url, pool_size=20)
    try:
        sleeping = text("SELECT pg_backend_pid() FROM pg_sleep(0.2)")
        answers = await asyncio.gather(*(db.run_on_driver(sleeping, {}) for _ in range(15)))
        backends = {rows[0][0] for rows in answers}
        assert len(backends) == DRIVER_POOL_MAX
    finally:
        await db.dispose()
