"""The EventStore on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

The gap problem is solved by serialising position assignment up to commit. On PostgreSQL an
append takes the row lock of the one-row `eventstore_position` counter and holds it until its
transaction ends. A later append can only take its positions after the earlier one has
committed (or rolled back, giving its numbers back), so events become visible in position
order and a plain `WHERE position > N` never skips a late commit. On SQLite the database's
one write lock already serialises writers up to commit, so the position is simply the rowid
SQLite assigns on insert (one more than the largest; events are never deleted, and a rolled
back insert leaves no hole): no counter row to update, one page less written per commit.

What differs between the two databases lives in `_Dialect` at the bottom of this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeDecorator

from townhall.platform.clock import Clock, SystemClock
from townhall.platform.db import Database
from townhall.platform.driver import AsyncpgPath
from townhall.platform.eventstore.adapters.sqlite_writer import Conflict, SqliteWriter
from townhall.platform.eventstore.ports import (
    ANY,
    NO_STREAM,
    Expected,
    Handler,
    NewEvent,
    RecordedEvent,
    Snapshot,
    VersionConflict,
)
from townhall.platform.eventstore.subscriptions import Notifier, Subscription
from townhall.platform.eventstore.upcasting import Upcasters
from townhall.platform.ids import new_id

log = logging.getLogger(__name__)

CHANNEL = "eventstore_events"
# Set on a connection that appended; the pool's checkin wakes in-process subscribers.
_APPENDED = "townhall.eventstore.appended"
_STREAM_VERSION_INDEX = "eventstore_events_stream_version"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite keeps naive UTC text that sorts)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        # On SQLite the text is written and parsed here (fromisoformat is much faster than
        # the generic parser), in the layout SQLAlchemy's own DateTime uses, so it sorts.
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()
POSITION = BigInteger().with_variant(Integer(), "sqlite")
events_table = Table(
    "eventstore_events",
    metadata,
    Column("position", POSITION, primary_key=True, autoincrement=False),
    Column("stream_id", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("type", String(255), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)
position_table = Table(
    "eventstore_position",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last", BigInteger, nullable=False),
)
subscriptions_table = Table(
    "eventstore_subscriptions",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
snapshots_table = Table(
    "eventstore_snapshots",
    metadata,
    Column("stream_id", String(255), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)

_e = events_table.c
# PostgreSQL, on asyncpg: the whole append in one statement. Check the stream's version,
# take positions from the counter (only when the check passed, so a failed check takes no
# lock and moves nothing) and insert. It returns the versions written; none: the check failed.
APPEND = """
WITH current AS (
  SELECT coalesce(max(version), 0) AS v FROM eventstore_events WHERE stream_id = $1::text
), checked AS (
  SELECT v FROM current WHERE $2::int < 0 OR v = $2::int
), taken AS (
  UPDATE eventstore_position SET last = last + $3::bigint
  WHERE id = 1 AND EXISTS (SELECT 1 FROM checked) RETURNING last
)
INSERT INTO eventstore_events (position, stream_id, version, event_id, type,
                               schema_version, data, metadata, recorded_at)
SELECT taken.last - $3::bigint + e.ord, $1::text, checked.v + e.ord, e.event_id, e.type,
       e.schema_version, e.data::json, e.metadata::json, $4::timestamptz
FROM taken, checked,
     unnest($5::text[], $6::text[], $7::int[], $8::text[], $9::text[])
       WITH ORDINALITY AS e(event_id, type, schema_version, data, metadata, ord)
RETURNING version
"""

_TAKE_POSITIONS = (
    update(position_table)
    .where(position_table.c.id == 1)
    .values(last=position_table.c.last + bindparam("n", type_=BigInteger))
    .returning(position_table.c.last)
)
_GIVE_BACK_POSITIONS = (
    update(position_table)
    .where(position_table.c.id == 1)
    .values(last=position_table.c.last - bindparam("n", type_=BigInteger))
)
_STREAM_VERSION = select(func.coalesce(func.max(_e.version), 0)).where(
    _e.stream_id == bindparam("stream_id")
)
_INSERT_EVENTS = insert(events_table)
# SQLite: the position column is the rowid, assigned by the insert under the write lock.
_ROWID_COLUMNS = [column for column in events_table.c if column.name != "position"]
_INSERT_EVENTS_BY_ROWID = text(
    f"INSERT INTO eventstore_events ({', '.join(c.name for c in _ROWID_COLUMNS)})"
    f" VALUES ({', '.join(':' + c.name for c in _ROWID_COLUMNS)})"
).bindparams(*(bindparam(column.name, type_=column.type) for column in _ROWID_COLUMNS))
_HEAD = select(func.coalesce(func.max(_e.position), 0))

# Reads in plain SQL, rows left as the driver gives them: `_RowCodec` decodes the rest of a
# `RecordedEvent` lazily. Column order: see `_RowCodec`.
_RAW_COLUMNS = (
    "position, stream_id, version, type, schema_version, event_id, data, metadata, recorded_at"
)
_RAW_READ_ALL = (
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE position > $1 ORDER BY position LIMIT $2"
)
_SQLITE_READ_ALL = (
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE position > ? ORDER BY position LIMIT ?"
)
_SQLITE_READ_STREAM = (
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE stream_id = ? AND version > ?"
    " ORDER BY version"
)
_SQLITE_READ_STREAM_UNTIL = (
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE stream_id = ? AND version > ?"
    " AND recorded_at <= ? ORDER BY version"
)
_READ_ALL_TEXT = text(
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE position > :after"
    " ORDER BY position LIMIT :limit"
).bindparams(bindparam("after", type_=BigInteger), bindparam("limit", type_=Integer))
_RAW_READ_STREAM = (
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE stream_id = $1 AND version > $2"
    " AND ($3::timestamptz IS NULL OR recorded_at <= $3::timestamptz) ORDER BY version"
)
_READ_STREAM_TEXT = text(
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE stream_id = :stream_id"
    " AND version > :after ORDER BY version"
).bindparams(bindparam("stream_id", type_=String), bindparam("after", type_=Integer))
_READ_STREAM_UNTIL_TEXT = text(
    f"SELECT {_RAW_COLUMNS} FROM eventstore_events WHERE stream_id = :stream_id"
    " AND version > :after AND recorded_at <= :until ORDER BY version"
).bindparams(
    bindparam("stream_id", type_=String),
    bindparam("after", type_=Integer),
    bindparam("until", type_=UtcDateTime),
)


class _RowCodec:
    """Decodes a `RecordedEvent`'s lazy fields from its raw row (see `_RAW_COLUMNS`)."""

    def __init__(self, upcasters: Upcasters) -> None:
        self._upcasters = upcasters

    def recorded(self, rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
        make = RecordedEvent.from_stored
        return [make(row, self) for row in rows]

    def schema_version(self, row: Sequence[Any]) -> int:
        # The stored version, or the type's current one when data gets upcast to it.
        return max(int(row[4]), self._upcasters.current_versions.get(row[3], 1))

    def id(self, row: Sequence[Any]) -> UUID:
        return UUID(row[5])

    def data(self, row: Sequence[Any]) -> Any:
        return self._upcasters.upcast(row[3], row[4], _json(row[6]))[1]

    def metadata(self, row: Sequence[Any]) -> Any:
        return _json(row[7])

    def recorded_at(self, row: Sequence[Any]) -> datetime:
        value = row[8]
        if isinstance(value, str):  # SQLite: naive UTC text
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        return value if value.tzinfo is UTC else value.astimezone(UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


class SqlEventStore:
    """The EventStore port on a `Database` (SQLite or PostgreSQL)."""

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
        self._dialect = _Dialect(database)
        self._notifier = Notifier()
        self._listener: AsyncConnection | None = None
        self._listener_lock = asyncio.Lock()
        # SQLite has one writer: queueing this process's appends here is far cheaper than
        # letting them spin in SQLite's busy handler. Other processes still use busy_timeout.
        self._sqlite_writer: asyncio.Lock | contextlib.nullcontext[None] = (
            asyncio.Lock() if database.is_sqlite else contextlib.nullcontext()
        )
        self._pool = database.engine.sync_engine.pool
        event.listen(self._pool, "checkin", self._on_checkin)
        self._codec = _RowCodec(self._upcasters)
        self._writer: SqliteWriter | None = None
        # The database's asyncpg pool, on PostgreSQL over asyncpg: its owner closes it.
        self._asyncpg: AsyncpgPath | None = database.driver
        url = database.engine.url
        path = url.database or ""
        if database.is_sqlite and path and path != ":memory:" and not url.query:
            self._writer = SqliteWriter(path)

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: Expected = ANY,
        conn: AsyncConnection | None = None,
    ) -> int:
        if isinstance(expected_version, int) and expected_version < 0:
            raise ValueError("expected_version must be >= 0, NO_STREAM or ANY")
        if conn is not None:
            return await self._append(conn, stream_id, events, expected_version)
        if self._writer is not None:
            return await self._append_on_writer(self._writer, stream_id, events, expected_version)
        if self.database.is_postgresql and events:
            return await self._append_in_one_statement(stream_id, events, expected_version)
        async with self._sqlite_writer, self.database.transaction() as own:
            return await self._append(own, stream_id, events, expected_version)

    async def _append_on_writer(
        self, writer: SqliteWriter, stream_id: str, events: Sequence[NewEvent], expected: Expected
    ) -> int:
        """SQLite, own transaction: on the dedicated writer connection (group commit)."""
        recorded_at = _sqlite_timestamp(self._clock.now())
        current = self._upcasters.current_version
        rows = [
            (
                str(new.id or new_id()),
                new.type,
                new.schema_version or current(new.type),
                json.dumps(dict(new.data)),
                json.dumps(dict(new.metadata)),
                recorded_at,
            )
            for new in events
        ]
        wanted = -1 if expected is ANY else 0 if expected is NO_STREAM else expected
        result = await writer.append(stream_id, rows, wanted)
        if isinstance(result, Conflict):
            raise VersionConflict(stream_id, expected, result.actual)
        if events:
            self._notifier.notify()
        return result

    async def _append_in_one_statement(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected
    ) -> int:
        """PostgreSQL, own transaction: check, take positions and insert in one round trip.

        The position lock is then held for that statement and the commit only. But the
        statement reads the stream's version from the snapshot it started with, which may
        predate an append to the same stream that committed while it waited for the lock;
        the unique (stream, version) index then refuses the insert. An append at an expected
        version has met a real conflict. An ANY append has not: it is made again the locking
        way (`_append`), which reads the version only once it holds the lock, so it cannot
        collide. Retrying the one statement instead would only queue behind the same writers
        again, as many times as they keep appending to the stream.
        """
        params = self._dialect.one_statement_params(
            stream_id, events, expected, self._clock.now(), self._upcasters
        )
        try:
            versions = await self._one_statement(params)
        except IntegrityError as error:
            if _STREAM_VERSION_INDEX not in str(error.orig):
                raise
            if expected is ANY:
                async with self.database.transaction() as own:
                    return await self._append(own, stream_id, events, expected)
            versions = []  # another append took this version while we waited for the lock
        if versions:
            return max(versions)
        # The stream is not at the expected version: nothing was written.
        raise VersionConflict(stream_id, expected, await self.stream_version(stream_id))

    async def _one_statement(self, params: dict[str, Any]) -> list[int]:
        """Run the one-statement append; the versions written, none when the check failed."""
        if self._asyncpg is not None:
            rows = await self._asyncpg.fetch(APPEND, *params.values())
            if rows:
                self._notifier.notify()
            return [int(row[0]) for row in rows]
        async with self.database.transaction() as own:
            result = await own.execute(self._dialect.append_statement, params)
            versions = [int(version) for version in result.scalars().all()]
            if versions:
                own.info[_APPENDED] = True
            return versions

    async def _append(
        self,
        conn: AsyncConnection,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
    ) -> int:
        count = len(events)
        counted = count and self._dialect.counts_positions
        if counted:
            # From here to commit this transaction holds the position counter's row lock.
            last = (await conn.execute(_TAKE_POSITIONS, {"n": count})).scalar_one()
        # Read once the lock is held (PostgreSQL: the counter row's; SQLite: the write lock
        # taken at BEGIN), by a statement that sees every append committed before: no other
        # append to this stream can commit before ours, so `current` is exact.
        current = (await conn.execute(_STREAM_VERSION, {"stream_id": stream_id})).scalar_one()
        if expected is not ANY and current != (0 if expected is NO_STREAM else expected):
            if counted:  # a caller may commit its transaction anyway: leave no hole
                await conn.execute(_GIVE_BACK_POSITIONS, {"n": count})
            raise VersionConflict(stream_id, expected, current)
        if not count:
            return int(current)
        now = self._clock.now()
        rows = []
        for offset, new in enumerate(events):
            row = {
                "stream_id": stream_id,
                "version": current + 1 + offset,
                "event_id": str(new.id or new_id()),
                "type": new.type,
                "schema_version": new.schema_version or self._upcasters.current_version(new.type),
                "data": dict(new.data),
                "metadata": dict(new.metadata),
                "recorded_at": now,
            }
            if counted:
                row["position"] = last - count + 1 + offset
            rows.append(row)
        await conn.execute(self._dialect.insert_events, rows)
        conn.info[_APPENDED] = True
        return int(current) + count

    # -- reading ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _reading(self, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield conn
            return
        async with self.database.connect() as own:
            yield own

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 0,
        until: datetime | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[RecordedEvent]:
        if conn is None and self._asyncpg is not None:
            if until is not None and until.tzinfo is None:
                raise ValueError("naive datetime: pass a timezone-aware one")
            rows = await self._asyncpg.fetch(_RAW_READ_STREAM, stream_id, from_version, until)
            return self._codec.recorded(rows)
        if conn is None and self._writer is not None:
            args: tuple[Any, ...] = (stream_id, from_version)
            if until is None:
                sql = _SQLITE_READ_STREAM
            else:
                sql, args = _SQLITE_READ_STREAM_UNTIL, (*args, _sqlite_timestamp(until))
            stored = self._writer.read(sql, args)
            if stored is not None:
                return self._codec.recorded(stored)
        params: dict[str, Any] = {"stream_id": stream_id, "after": from_version}
        query = _READ_STREAM_TEXT
        if until is not None:
            query, params["until"] = _READ_STREAM_UNTIL_TEXT, until
        async with self._reading(conn) as reader:
            return self._codec.recorded((await reader.execute(query, params)).all())

    async def read_all(
        self, *, from_position: int = 0, limit: int = 1000, conn: AsyncConnection | None = None
    ) -> list[RecordedEvent]:
        if conn is None and self._asyncpg is not None:
            return self._codec.recorded(
                await self._asyncpg.fetch(_RAW_READ_ALL, from_position, limit)
            )
        if conn is None and self._writer is not None:
            stored = self._writer.read(_SQLITE_READ_ALL, (from_position, limit))
            if stored is not None:
                return self._codec.recorded(stored)
        async with self._reading(conn) as reader:
            result = await reader.execute(_READ_ALL_TEXT, {"after": from_position, "limit": limit})
            return self._codec.recorded(result.all())

    async def stream_version(self, stream_id: str) -> int:
        async with self.database.connect() as conn:
            result = await conn.execute(_STREAM_VERSION, {"stream_id": stream_id})
            return int(result.scalar_one())

    async def head_position(self, conn: AsyncConnection | None = None) -> int:
        async with self._reading(conn) as reader:
            return int((await reader.execute(_HEAD)).scalar_one())

    # -- snapshots -------------------------------------------------------------------------

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        state: Any,
        *,
        schema_version: int = 1,
        conn: AsyncConnection | None = None,
    ) -> None:
        values = {
            "stream_id": stream_id,
            "version": version,
            "schema_version": schema_version,
            "state": state,
            "recorded_at": self._clock.now(),
        }
        statement = self._dialect.upsert_snapshot(values)
        if conn is not None:
            await conn.execute(statement)
            return
        async with self.database.transaction() as own:
            await own.execute(statement)

    async def load_snapshot(
        self, stream_id: str, *, conn: AsyncConnection | None = None
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

    async def lock_checkpoint(self, name: str, conn: AsyncConnection) -> int:
        """The subscription's position, row-locked until `conn`'s transaction ends."""
        await conn.execute(self._dialect.insert_checkpoint_if_missing(name, self._clock.now()))
        c = subscriptions_table.c
        query = select(c.position).where(c.name == name)
        if self.database.is_postgresql:
            query = query.with_for_update()
        return int((await conn.execute(query)).scalar_one())

    async def save_checkpoint(self, name: str, position: int, conn: AsyncConnection) -> None:
        c = subscriptions_table.c
        await conn.execute(
            update(subscriptions_table)
            .where(c.name == name)
            .values(position=position, updated_at=self._clock.now())
        )

    async def delete_checkpoint(self, name: str, conn: AsyncConnection) -> None:
        await conn.execute(delete(subscriptions_table).where(subscriptions_table.c.name == name))

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
        if self.database.is_postgresql:
            await self._ensure_listener()
        try:
            await asyncio.wait_for(signal.wait(), max_wait)
        except TimeoutError:
            pass
        finally:
            self._notifier.discard(signal)

    def _on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_APPENDED, False):
            self._notifier.notify()

    async def _ensure_listener(self) -> None:
        async with self._listener_lock:
            if self._listener is not None and not self._listener.closed:
                return
            try:
                conn = await self.database.engine.connect()
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                await driver.add_listener(CHANNEL, self._on_notify)
            except Exception:  # LISTEN is a fast path; polling still finds new events
                log.warning("eventstore: LISTEN failed, falling back to polling", exc_info=True)
                return
            self._listener = conn

    def _on_notify(self, *_args: object) -> None:
        self._notifier.notify()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        if event.contains(self._pool, "checkin", self._on_checkin):
            event.remove(self._pool, "checkin", self._on_checkin)
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                raw = await listener.get_raw_connection()
                if raw.driver_connection is not None:
                    await raw.driver_connection.remove_listener(CHANNEL, self._on_notify)
            finally:
                await listener.close()
        if self._owns_database:
            await self.database.dispose()


def _sqlite_timestamp(value: datetime) -> str:
    """What `UtcDateTime` stores on SQLite: naive UTC text in an order that sorts."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware one")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class _Dialect:
    """The statements whose SQL differs between SQLite and PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._insert = postgresql.insert if database.is_postgresql else sqlite.insert
        # Where an event's position comes from. PostgreSQL: the counter row, locked to commit.
        # SQLite: the rowid the insert assigns under the database's one write lock.
        self.counts_positions = database.is_postgresql
        self.insert_events = _INSERT_EVENTS if self.counts_positions else _INSERT_EVENTS_BY_ROWID

    # PostgreSQL only: see SqlEventStore._append_in_one_statement. The UPDATE runs only when
    # the version check passes, so a failed check takes no lock and moves no counter.
    append_statement = text(
        """
        WITH current AS (
          SELECT coalesce(max(version), 0) AS v FROM eventstore_events
          WHERE stream_id = CAST(:stream_id AS text)
        ), checked AS (
          SELECT v FROM current WHERE CAST(:expected AS int) < 0 OR v = CAST(:expected AS int)
        ), taken AS (
          UPDATE eventstore_position SET last = last + CAST(:n AS bigint)
          WHERE id = 1 AND EXISTS (SELECT 1 FROM checked) RETURNING last
        )
        INSERT INTO eventstore_events (position, stream_id, version, event_id, type,
                                       schema_version, data, metadata, recorded_at)
        SELECT taken.last - CAST(:n AS bigint) + e.ord, CAST(:stream_id AS text),
               checked.v + e.ord, e.event_id, e.type, e.schema_version, CAST(e.data AS json),
               CAST(e.metadata AS json), CAST(:recorded_at AS timestamptz)
        FROM taken, checked,
             unnest(CAST(:event_ids AS text[]), CAST(:types AS text[]),
                    CAST(:schema_versions AS int[]), CAST(:datas AS text[]),
                    CAST(:metadatas AS text[]))
               WITH ORDINALITY AS e(event_id, type, schema_version, data, metadata, ord)
        RETURNING version
        """
    )

    @staticmethod
    def one_statement_params(
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        now: datetime,
        upcasters: Upcasters,
    ) -> dict[str, Any]:
        return {
            "stream_id": stream_id,
            "expected": -1 if expected is ANY else 0 if expected is NO_STREAM else expected,
            "n": len(events),
            "recorded_at": now,
            "event_ids": [str(new.id or new_id()) for new in events],
            "types": [new.type for new in events],
            "schema_versions": [
                new.schema_version or upcasters.current_version(new.type) for new in events
            ],
            "datas": [json.dumps(dict(new.data)) for new in events],
            "metadatas": [json.dumps(dict(new.metadata)) for new in events],
        }

    def insert_checkpoint_if_missing(self, name: str, now: datetime) -> Any:
        return (
            self._insert(subscriptions_table)
            .values(name=name, position=0, updated_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )

    def upsert_snapshot(self, values: dict[str, Any]) -> Any:
        statement = self._insert(snapshots_table).values(**values)
        return statement.on_conflict_do_update(
            index_elements=["stream_id", "version"],
            set_={
                "state": statement.excluded.state,
                "schema_version": statement.excluded.schema_version,
                "recorded_at": statement.excluded.recorded_at,
            },
        )
