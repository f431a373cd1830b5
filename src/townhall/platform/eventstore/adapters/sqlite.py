"""The SQLite recorder.

SQLite has one writer: a transaction that writes holds the database's write lock from BEGIN
(IMMEDIATE, see `townhall.platform.db`) to commit. That lock is what keeps the global order
gapless: the position is the rowid the insert assigns under it (one more than the largest;
events are never deleted, and a rolled back insert leaves no hole), so no position is
reserved before the insert and there is nothing to give back on a conflict.

On a database file the store's own appends and reads run on the connections of a
`SqliteWriter` (group commit, no SQLAlchemy on the hot path); on `:memory:` or a URL with
query options they run on the `Database`'s connections, one append at a time in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import TextClause, text
from sqlalchemy.dialects import sqlite

from townhall.platform.eventstore.adapters.schema import (
    stored_rows,
    stored_timestamp,
    wanted_version,
)
from townhall.platform.eventstore.adapters.sql import SqlEventStore
from townhall.platform.eventstore.adapters.sqlite_writer import INSERT, Conflict, SqliteWriter
from townhall.platform.eventstore.ports import Expected, NewEvent, VersionConflict

_INSERT = text(INSERT)


class SqliteEventStore(SqlEventStore):
    """The EventStore port on SQLite."""

    _insert_rows: ClassVar[TextClause] = _INSERT
    _insert: ClassVar[Any] = staticmethod(sqlite.insert)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.database.engine.url
        path = url.database or ""
        self._writer: SqliteWriter | None = None
        if path and path != ":memory:" and not url.query:
            self._writer = SqliteWriter(path)
        # Without a writer: this process's appends queue here, which is far cheaper than
        # spinning in SQLite's busy handler. Other processes still wait through busy_timeout.
        self._one_append = asyncio.Lock()

    def _stored_timestamp(self, value: datetime) -> Any:
        return stored_timestamp(value, as_text=True)

    async def _append_alone(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected
    ) -> int:
        if self._writer is None:
            async with self._one_append, self.database.transaction() as own:
                return await self._append_in(own, stream_id, events, expected)
        recorded_at = self._stored_timestamp(self._clock.now())
        rows = stored_rows(stream_id, events, self._upcasters, recorded_at)
        result = await self._writer.append(stream_id, rows, wanted_version(expected))
        if isinstance(result, Conflict):
            raise VersionConflict(stream_id, expected, result.actual)
        if events:
            self._notifier.notify()
        return result

    async def _fetch_alone(self, statement: TextClause, params: dict[str, Any]) -> list[Any]:
        # On the writer's inline connection unless SQLite answers busy there.
        if self._writer is not None:
            rows = self._writer.read(statement.text, params)
            if rows is not None:
                return rows
        return await super()._fetch_alone(statement, params)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await super().close()
