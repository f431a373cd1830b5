"""The database: one async SQLAlchemy engine per process, on SQLite or PostgreSQL.

Modules use SQLAlchemy Core on `AsyncConnection`s. `Database.transaction()` is the unit of
work: anything written on the connection it yields (state, outbox rows, events) commits or
rolls back together. A service sees that connection as an opaque `Transaction`
(`townhall.platform.transaction`); its adapters get the connection back with `connection()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import TextClause, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from townhall.platform.driver import AsyncpgPath
from townhall.platform.transaction import Transaction

_CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}
DRIVER_POOL_MAX = 10


def connection(transaction: Transaction) -> AsyncConnection:
    """The SQLAlchemy connection behind a caller's transaction handle."""
    if not isinstance(transaction, AsyncConnection):
        raise TypeError(
            f"expected the connection of Database.transaction(), got {type(transaction)!r}"
        )
    return transaction


def aware(value: datetime | None) -> datetime | None:
    """A datetime read back from a table, in UTC: SQLite hands them back naive (they were
    stored as UTC), PostgreSQL's timestamptz aware."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def dialect_insert(conn: AsyncConnection) -> Any:
    """The `insert` of the connection's dialect, for its ON CONFLICT clauses (upserts)."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


class Database:
    def __init__(
        self, url: str, *, pool_size: int = 20, echo: bool = False, custom_plans: bool = False
    ) -> None:
        """`custom_plans` (PostgreSQL): plan each statement for the values it runs with
        (`plan_cache_mode = force_custom_plan`) instead of reusing a generic plan. For
        processes whose statements are batches over growing tables (bus workers, the relay).
        After five runs of a prepared statement PostgreSQL may switch to a generic plan, made
        for the table as it was then, and keeps it until the table's statistics change. One
        made while a table was nearly empty is a sequential scan; with no ANALYZE since
        (autovacuum off, or not yet run) it stays one however large the table grows. Each
        statement then costs a planning step instead, tens of microseconds."""
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()  # "sqlite" | "postgresql"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # SQLite has one writer; a timeout makes a second writer wait instead of failing.
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # No pre-ping: it is a round trip on every checkout. A connection that died with
            # the server fails its statement once; SQLAlchemy then recognises the disconnect
            # and drops the whole pool, so a restart of PostgreSQL costs one failed unit of
            # work (a request answers 500, a bus handler is retried), not a broken process.
            # Every connection, once opened, is kept (at most `pool_size`, as many as before):
            # with overflow connections, each one returned beyond the pool's size was closed
            # and the next burst opened it again, a new PostgreSQL backend (fork, TLS
            # negotiation, authentication) per request under steady concurrency.
            kwargs.update(pool_size=pool_size, max_overflow=0)
            if custom_plans:
                kwargs["connect_args"] = {"server_settings": _CUSTOM_PLANS}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # PostgreSQL over asyncpg: a small asyncpg pool beside SQLAlchemy's, for the hot single
        # statements (`run_on_driver`, the event store's appends and reads). One per database,
        # of at most DRIVER_POOL_MAX connections: its callers batch (one statement under way
        # per batcher), and every connection counts against PostgreSQL's max_connections,
        # once for each process beside those of SQLAlchemy's pool.
        self.driver: AsyncpgPath | None = None
        self._on_driver: dict[str, tuple[str, tuple[str, ...]]] = {}
        if self.is_postgresql and parsed.get_driver_name() == "asyncpg":
            self.driver = AsyncpgPath(
                url,
                max_size=min(pool_size, DRIVER_POOL_MAX),
                server_settings=_CUSTOM_PLANS if custom_plans else None,
            )
        self._write_engine = self.engine
        self._read_engine = self.engine
        if self.is_postgresql:
            # Reads run without BEGIN/ROLLBACK (two round trips saved). Under READ COMMITTED
            # every statement takes its own snapshot anyway, so a read sees the same thing.
            self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            # Writers take SQLite's write lock at BEGIN so two of them queue (busy_timeout)
            # instead of failing on a read-to-write lock upgrade.
            self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction: committed on exit, rolled back on an exception."""
        async with self._write_engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. On PostgreSQL each statement sees what was committed when
        it started (no transaction is opened); on SQLite the read keeps the snapshot of its
        first statement.

        Nothing written on it is guaranteed to be kept or undone; write in `transaction()`.
        """
        async with self._read_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a unit of work that is a single statement (a conditional UPDATE,
        say). On PostgreSQL each statement commits by itself, without the BEGIN and COMMIT
        round trips of `transaction()`; on SQLite this is `transaction()`, committed on exit.

        Two statements on it are two units of work on PostgreSQL: use `transaction()` for
        anything that must commit or fail together.
        """
        if self.is_postgresql:
            async with self._read_engine.connect() as conn:  # the AUTOCOMMIT engine
                yield conn
        else:
            async with self.transaction() as conn:
                yield conn

    @property
    def has_driver_path(self) -> bool:
        """Whether `run_on_driver` is available (PostgreSQL over asyncpg)."""
        return self.driver is not None

    async def run_on_driver(
        self, statement: TextClause, parameters: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """PostgreSQL over asyncpg: run one `text()` statement with its named `parameters`
        straight on the driver, as a unit of work that commits by itself (as `autocommit()`),
        and return its rows. For the hot single statements of a request or a message: it
        skips SQLAlchemy's layers (see `townhall.platform.driver`). Errors are SQLAlchemy's
        (`IntegrityError`, `DBAPIError`), as on the other paths."""
        if self.driver is None:
            raise RuntimeError("run_on_driver needs PostgreSQL over asyncpg")
        compiled = self._on_driver.get(statement.text)
        if compiled is None:
            positional = statement.compile(dialect=self.engine.dialect)
            compiled = positional.string, tuple(positional.positiontup or ())
            self._on_driver[statement.text] = compiled
        sql, names = compiled
        rows = await self.driver.fetch(sql, *(parameters[name] for name in names))
        return [tuple(row) for row in rows]

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.driver is not None:
            await self.driver.close()
        await self.engine.dispose()


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is always DEFERRED).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
