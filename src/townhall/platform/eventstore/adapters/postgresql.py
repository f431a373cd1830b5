"""The PostgreSQL recorder.

Positions come from the one-row `eventstore_position` counter: an append adds its event count
to it, which takes the row's lock until the transaction ends. A later append can only take
its positions once the earlier one has committed (or rolled back, giving its numbers back),
so events become visible in position order and a reader never finds one appear below a
position it has already read.

The store's own appends run as one statement (`_APPEND`); appends in a caller's transaction
take the counter first and read the version after (`SqlEventStore._append_in`). On asyncpg
the store's own statements and reads run straight on the `Database`'s asyncpg pool.
Subscribers in this process are woken by the commit; in other processes by NOTIFY on
`CHANNEL` (sent by a trigger of the event store's migration).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import TextClause, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from townhall.platform.eventstore.adapters.schema import (
    stored_rows,
    stored_timestamp,
    wanted_version,
)
from townhall.platform.eventstore.adapters.sql import APPENDED, SqlEventStore
from townhall.platform.eventstore.ports import ANY, Expected, NewEvent, VersionConflict

log = logging.getLogger(__name__)

CHANNEL = "eventstore_events"
_STREAM_VERSION_INDEX = "eventstore_events_stream_version"

# The whole append: check the stream's version, take positions from the counter (only when
# the check passed, so a failed check takes no lock and moves nothing) and insert. It returns
# the versions written; none when the check failed. `expected` < 0 means any version.
_APPEND = text(
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
# The locking way's two steps around the insert (`SqlEventStore._append_in`).
_TAKE_POSITIONS = text(
    "UPDATE eventstore_position SET last = last + CAST(:n AS bigint) WHERE id = 1 RETURNING last"
)
_GIVE_BACK_POSITIONS = text(
    "UPDATE eventstore_position SET last = last - CAST(:n AS bigint) WHERE id = 1"
)
_INSERT = text(
    "INSERT INTO eventstore_events (position, stream_id, version, event_id, type,"
    " schema_version, data, metadata, recorded_at) VALUES (:position, :stream_id, :version,"
    " :event_id, :type, :schema_version, CAST(:data AS json), CAST(:metadata AS json),"
    " :recorded_at)"
)


class PostgresEventStore(SqlEventStore):
    """The EventStore port on PostgreSQL."""

    _insert_rows: ClassVar[TextClause] = _INSERT
    _insert: ClassVar[Any] = staticmethod(postgresql.insert)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_driver: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._listener: AsyncConnection | None = None
        self._listener_lock = asyncio.Lock()

    def _stored_timestamp(self, value: datetime) -> Any:
        return stored_timestamp(value, as_text=False)

    async def _take_positions(self, conn: AsyncConnection, count: int) -> int | None:
        # From here to commit this transaction holds the counter row's lock.
        return int((await conn.execute(_TAKE_POSITIONS, {"n": count})).scalar_one())

    async def _give_back_positions(self, conn: AsyncConnection, count: int) -> None:
        await conn.execute(_GIVE_BACK_POSITIONS, {"n": count})

    def _checkpoint_query(self, name: str) -> Select[Any]:
        return super()._checkpoint_query(name).with_for_update()

    # -- the store's own statements --------------------------------------------------------

    async def _fetch_alone(self, statement: TextClause, params: dict[str, Any]) -> list[Any]:
        driver = self.database.driver
        if driver is None:
            return await super()._fetch_alone(statement, params)
        compiled = self._on_driver.get(statement.text)
        if compiled is None:  # named parameters to asyncpg's $n, once per statement
            positional = statement.compile(dialect=self.database.engine.dialect)
            compiled = positional.string, tuple(positional.positiontup or ())
            self._on_driver[statement.text] = compiled
        sql, names = compiled
        return await driver.fetch(sql, *(params.get(name) for name in names))

    async def _append_alone(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected
    ) -> int:
        """Check, take positions and insert in one round trip (`_APPEND`).

        The counter's lock is then held for that statement and the commit only. But the
        statement reads the stream's version from the snapshot it started with, which may
        predate an append to the same stream that committed while it waited for the lock;
        the unique (stream, version) index then refuses the insert. An append at an expected
        version has met a real conflict. An ANY append has not: it is made again the locking
        way (`_append_in`), which reads the version only once it holds the lock, so it cannot
        collide. Retrying the one statement instead would only queue behind the same writers
        again, as many times as they keep appending to the stream.
        """
        if not events:
            async with self.database.transaction() as own:
                return await self._append_in(own, stream_id, events, expected)
        rows = stored_rows(
            stream_id, events, self._upcasters, self._stored_timestamp(self._clock.now())
        )
        params = {
            "stream_id": stream_id,
            "expected": wanted_version(expected),
            "n": len(rows),
            "recorded_at": rows[0]["recorded_at"],
            "event_ids": [row["event_id"] for row in rows],
            "types": [row["type"] for row in rows],
            "schema_versions": [row["schema_version"] for row in rows],
            "datas": [row["data"] for row in rows],
            "metadatas": [row["metadata"] for row in rows],
        }
        try:
            versions = [int(row[0]) for row in await self._run_append(params)]
        except IntegrityError as error:
            if _STREAM_VERSION_INDEX not in str(error.orig):
                raise
            if expected is ANY:
                async with self.database.transaction() as own:
                    return await self._append_in(own, stream_id, events, expected)
            versions = []  # another append took this version while we waited for the lock
        if versions:
            return max(versions)
        # The stream is not at the expected version: nothing was written.
        raise VersionConflict(stream_id, expected, await self.stream_version(stream_id))

    async def _run_append(self, params: dict[str, Any]) -> list[Any]:
        """`_APPEND` in a transaction of its own; its rows (the versions written)."""
        if self.database.driver is not None:
            rows = await self._fetch_alone(_APPEND, params)
            if rows:
                self._notifier.notify()
            return rows
        async with self.database.transaction() as own:
            rows = list((await own.execute(_APPEND, params)).all())
            if rows:
                own.info[APPENDED] = True
            return rows

    # -- waking subscribers in other processes ----------------------------------------------

    async def wait_for_append(self, signal: asyncio.Event, max_wait: float) -> None:
        await self._ensure_listener()
        await super().wait_for_append(signal, max_wait)

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
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                raw = await listener.get_raw_connection()
                if raw.driver_connection is not None:
                    await raw.driver_connection.remove_listener(CHANNEL, self._on_notify)
            finally:
                await listener.close()
        await super().close()
