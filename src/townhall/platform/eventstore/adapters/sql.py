"""The EventStore port on SQLAlchemy: what the SQLite and PostgreSQL recorders share.

`SqlEventStore` holds everything that is the same on both databases: appends and reads in a
caller's transaction, snapshots, subscription checkpoints, waking subscribers. Each database
has its own subclass (`sqlite.SqliteEventStore`, `postgresql.PostgresEventStore`) that
overrides the hooks below: how an append in its own transaction is made, where positions
come from, and how the store reads when no transaction is passed.

No gaps in the global order: positions are handed out under a lock held to commit, so events
become visible in position order and a plain `WHERE position > N` never skips a late commit.
Which lock that is, is each subclass's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import TextClause, delete, event, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from townhall.platform.clock import Clock, SystemClock
from townhall.platform.db import Database, connection
from townhall.platform.eventstore.adapters.schema import (
    HEAD_POSITION,
    READ_ALL,
    READ_STREAM,
    READ_STREAM_UNTIL,
    STREAM_VERSION,
    RowCodec,
    number,
    snapshots_table,
    stored_rows,
    subscriptions_table,
)
from townhall.platform.eventstore.ports import (
    ANY,
    NO_STREAM,
    Expected,
    Handler,
    NewEvent,
    RecordedEvent,
    Snapshot,
    Transaction,
    VersionConflict,
)
from townhall.platform.eventstore.subscriptions import Notifier, Subscription
from townhall.platform.eventstore.upcasting import Upcasters

# Set on a connection that appended; the pool's checkin wakes in-process subscribers.
APPENDED = "townhall.eventstore.appended"

_STREAM_VERSION = text(STREAM_VERSION)
_HEAD_POSITION = text(HEAD_POSITION)
_READ_ALL = text(READ_ALL)
_READ_STREAM = text(READ_STREAM)
_READ_STREAM_UNTIL = text(READ_STREAM_UNTIL)


class SqlEventStore:
    """The shared base of the SQL recorders; `connect()` builds the right subclass."""

    # The dialect's INSERT, for its ON CONFLICT clauses.
    _insert: ClassVar[Any]
    # The insert of numbered rows (`schema.number`), with `position` when one was taken.
    _insert_rows: ClassVar[TextClause]

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock | None = None,
        upcasters: Upcasters | None = None,
        owns_database: bool = False,
        poll_interval: float = 1.0,
    ) -> None:
        self.database = database
        self.poll_interval = poll_interval
        self._clock = clock or SystemClock()
        self._upcasters = upcasters if upcasters is not None else Upcasters()
        self._owns_database = owns_database
        self._codec = RowCodec(self._upcasters)
        self._notifier = Notifier()
        self._pool = database.engine.sync_engine.pool
        event.listen(self._pool, "checkin", self._on_checkin)

    # -- hooks of the subclasses ------------------------------------------------------------

    async def _append_alone(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected
    ) -> int:
        """Append in a transaction of the store's own; the stream's new version."""
        raise NotImplementedError

    async def _take_positions(self, conn: AsyncConnection, count: int) -> int | None:
        """Reserve `count` positions to commit; the last one, or None when the insert
        assigns them (then nothing is reserved)."""
        return None

    async def _give_back_positions(self, conn: AsyncConnection, count: int) -> None:
        """Undo `_take_positions` in a transaction that will still commit."""

    def _stored_timestamp(self, value: datetime) -> Any:
        """A timestamp as this database's statements take it."""
        raise NotImplementedError

    async def _fetch_alone(self, statement: TextClause, params: dict[str, Any]) -> list[Any]:
        """Run a read outside any caller's transaction; its rows."""
        async with self.database.connect() as conn:
            return list((await conn.execute(statement, params)).all())

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: Expected = ANY,
        conn: Transaction | None = None,
    ) -> int:
        if isinstance(expected_version, int) and expected_version < 0:
            raise ValueError("expected_version must be >= 0, NO_STREAM or ANY")
        if conn is None:
            return await self._append_alone(stream_id, events, expected_version)
        return await self._append_in(connection(conn), stream_id, events, expected_version)

    async def _append_in(
        self,
        conn: AsyncConnection,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
    ) -> int:
        """The locking way: positions first, then the version, then the insert."""
        count = len(events)
        last = await self._take_positions(conn, count) if count else None
        # Read once the lock that orders positions is held (PostgreSQL: the counter row's,
        # just taken; SQLite: the write lock `Database.transaction()` takes at BEGIN): no
        # other append to this stream can commit before ours, so `current` is exact.
        current = int((await conn.execute(_STREAM_VERSION, {"stream_id": stream_id})).scalar_one())
        if expected is not ANY and current != (0 if expected is NO_STREAM else expected):
            if last is not None:  # a caller may commit its transaction anyway: leave no hole
                await self._give_back_positions(conn, count)
            raise VersionConflict(stream_id, expected, current)
        if not count:
            return current
        recorded_at = self._stored_timestamp(self._clock.now())
        rows = number(stored_rows(stream_id, events, self._upcasters, recorded_at), current)
        if last is not None:
            for position, row in enumerate(rows, last - count + 1):
                row["position"] = position
        await conn.execute(self._insert_rows, rows)
        conn.info[APPENDED] = True
        return current + count

    # -- reading ---------------------------------------------------------------------------

    async def _fetch(
        self, statement: TextClause, params: dict[str, Any], conn: Transaction | None
    ) -> list[Any]:
        if conn is None:
            return await self._fetch_alone(statement, params)
        return list((await connection(conn).execute(statement, params)).all())

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 0,
        until: datetime | None = None,
        conn: Transaction | None = None,
    ) -> list[RecordedEvent]:
        params: dict[str, Any] = {"stream_id": stream_id, "after": from_version}
        statement = _READ_STREAM
        if until is not None:
            statement, params["until"] = _READ_STREAM_UNTIL, self._stored_timestamp(until)
        return self._codec.recorded(await self._fetch(statement, params, conn))

    async def read_all(
        self, *, from_position: int = 0, limit: int = 1000, conn: Transaction | None = None
    ) -> list[RecordedEvent]:
        rows = await self._fetch(_READ_ALL, {"after": from_position, "limit": limit}, conn)
        return self._codec.recorded(rows)

    async def stream_version(self, stream_id: str) -> int:
        async with self.database.connect() as conn:
            result = await conn.execute(_STREAM_VERSION, {"stream_id": stream_id})
            return int(result.scalar_one())

    async def head_position(self, conn: Transaction | None = None) -> int:
        async with self._reading(conn) as reader:
            return int((await reader.execute(_HEAD_POSITION)).scalar_one())

    @asynccontextmanager
    async def _reading(self, conn: Transaction | None) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield connection(conn)
            return
        async with self.database.connect() as own:
            yield own

    # -- snapshots -------------------------------------------------------------------------

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        state: Any,
        *,
        schema_version: int = 1,
        conn: Transaction | None = None,
    ) -> None:
        values = {
            "stream_id": stream_id,
            "version": version,
            "schema_version": schema_version,
            "state": state,
            "recorded_at": self._clock.now(),
        }
        insert = self._insert(snapshots_table).values(**values)
        statement = insert.on_conflict_do_update(
            index_elements=["stream_id", "version"],
            set_={
                "state": insert.excluded.state,
                "schema_version": insert.excluded.schema_version,
                "recorded_at": insert.excluded.recorded_at,
            },
        )
        if conn is not None:
            await connection(conn).execute(statement)
            return
        async with self.database.transaction() as own:
            await own.execute(statement)

    async def load_snapshot(
        self, stream_id: str, *, conn: Transaction | None = None
    ) -> Snapshot | None:
        s = snapshots_table.c
        query = (
            select(s.version, s.state, s.schema_version, s.recorded_at)
            .where(s.stream_id == stream_id)
            .order_by(s.version.desc())
            .limit(1)
        )
        async with self._reading(conn) as reader:
            row = (await reader.execute(query)).first()
        if row is None:
            return None
        return Snapshot(
            stream_id=stream_id,
            version=row.version,
            state=row.state,
            schema_version=row.schema_version,
            recorded_at=row.recorded_at,
        )

    # -- subscriptions and checkpoints -----------------------------------------------------

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction on the store's database (for projections and checkpoints)."""
        return self.database.transaction()

    def subscribe(
        self, name: str, handler: Handler, *, batch: int = 500, poll_interval: float | None = None
    ) -> Subscription:
        """A catch-up subscription; `start()` it, or `catch_up()` it once."""
        return Subscription(
            self,
            name,
            handler,
            batch=batch,
            poll_interval=self.poll_interval if poll_interval is None else poll_interval,
        )

    def _checkpoint_query(self, name: str) -> Select[Any]:
        """The checkpoint's position, as `lock_checkpoint` reads it."""
        c = subscriptions_table.c
        return select(c.position).where(c.name == name)

    async def lock_checkpoint(self, name: str, conn: Transaction) -> int:
        """The subscription's position, row-locked until `conn`'s transaction ends."""
        sql = connection(conn)
        insert = self._insert(subscriptions_table).values(
            name=name, position=0, updated_at=self._clock.now()
        )
        await sql.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
        return int((await sql.execute(self._checkpoint_query(name))).scalar_one())

    async def save_checkpoint(self, name: str, position: int, conn: Transaction) -> None:
        c = subscriptions_table.c
        await connection(conn).execute(
            update(subscriptions_table)
            .where(c.name == name)
            .values(position=position, updated_at=self._clock.now())
        )

    async def delete_checkpoint(self, name: str, conn: Transaction) -> None:
        await connection(conn).execute(
            delete(subscriptions_table).where(subscriptions_table.c.name == name)
        )

    async def checkpoints(self) -> dict[str, int]:
        c = subscriptions_table.c
        async with self.database.connect() as conn:
            rows = await conn.execute(select(c.name, c.position))
            return {name: int(position) for name, position in rows}

    def appended_signal(self) -> asyncio.Event:
        """An event set when the next append commits: take it before the read it guards."""
        return self._notifier.register()

    async def wait_for_append(self, signal: asyncio.Event, max_wait: float) -> None:
        """Return when `signal` fires or after `max_wait` seconds, the polling floor."""
        try:
            await asyncio.wait_for(signal.wait(), max_wait)
        except TimeoutError:
            pass
        finally:
            self._notifier.discard(signal)

    def _on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(APPENDED, False):
            self._notifier.notify()

    async def close(self) -> None:
        if event.contains(self._pool, "checkin", self._on_checkin):
            event.remove(self._pool, "checkin", self._on_checkin)
        if self._owns_database:
            await self.database.dispose()
