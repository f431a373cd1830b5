"""SQLite appends on one dedicated connection, with group commit.

SQLite has a single writer, so this process's own appends (those not joining a caller's
transaction) are queued here and written by one `sqlite3` connection on one thread: a whole
append, or a whole batch of appends that arrived meanwhile, costs one thread hop and one
commit. Each append in a batch runs under its own SAVEPOINT, so it stays all-or-nothing and
a stale expected version writes nothing while the others commit. A caller's future resolves
only after the commit that holds its events. Positions come from the same counter row as
every other append path, under SQLite's write lock (BEGIN IMMEDIATE), so they are handed out
in commit order; other connections (a caller's transaction, another process) queue on the
write lock through busy_timeout as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError

# One row per event, without position and version: (event_id, type, schema_version, data,
# metadata, recorded_at), all in their stored form.
Row = tuple[str, str, int, str, str, str]

_INSERT = (
    "INSERT INTO eventstore_events (position, stream_id, version, event_id, type,"
    " schema_version, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_VERSION = "SELECT coalesce(max(version), 0) FROM eventstore_events WHERE stream_id = ?"
_TAKE = "UPDATE eventstore_position SET last = last + ? WHERE id = 1 RETURNING last"


@dataclass(frozen=True)
class Conflict:
    """The stream was not at the expected version; nothing was written."""

    actual: int


@dataclass
class _Append:
    stream_id: str
    expected: int  # -1: any version
    rows: Sequence[Row]
    future: asyncio.Future[int | Conflict] = field(repr=False)


class SqliteWriter:
    """Serialises this process's appends onto one connection and commits them in batches."""

    def __init__(self, path: str, *, busy_timeout: float = 30.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventstore-sqlite-writer")
        self._connection: sqlite3.Connection | None = None
        self._pending: list[_Append] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, stream_id: str, rows: Sequence[Row], expected: int) -> int | Conflict:
        """The stream's new version, or a `Conflict`, once the append is committed."""
        future: asyncio.Future[int | Conflict] = asyncio.get_running_loop().create_future()
        self._pending.append(_Append(stream_id, expected, rows, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await loop.run_in_executor(self._executor, self._write, batch)
                except BaseException as error:  # the whole batch failed (e.g. at COMMIT)
                    for append in batch:
                        if not append.future.done():
                            append.future.set_exception(_translated(error))
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                for append, result in zip(batch, results, strict=True):
                    if append.future.done():
                        continue
                    if isinstance(result, BaseException):
                        append.future.set_exception(_translated(result))
                    else:
                        append.future.set_result(result)
        finally:
            self._flusher = None

    # -- on the writer thread ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,  # BEGIN is issued here, IMMEDIATE
                check_same_thread=False,
            )
            # The same settings as townhall.platform.db gives its own connections.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            self._connection = conn
        return self._connection

    def _write(self, batch: list[_Append]) -> list[int | Conflict | BaseException]:
        conn = self._connect()
        alone = len(batch) == 1
        results: list[int | Conflict | BaseException] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for append in batch:
                if alone:
                    results.append(self._append(conn, append))
                    continue
                conn.execute("SAVEPOINT eventstore_append")
                try:
                    results.append(self._append(conn, append))
                except sqlite3.Error as error:
                    conn.execute("ROLLBACK TO eventstore_append")
                    results.append(error)
                conn.execute("RELEASE eventstore_append")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    @staticmethod
    def _append(conn: sqlite3.Connection, append: _Append) -> int | Conflict:
        current: int = conn.execute(_VERSION, (append.stream_id,)).fetchone()[0]
        if append.expected >= 0 and current != append.expected:
            return Conflict(current)
        count = len(append.rows)
        if not count:
            return current
        last: int = conn.execute(_TAKE, (count,)).fetchone()[0]
        first, stream_id = last - count + 1, append.stream_id
        conn.executemany(
            _INSERT,
            [
                (first + offset, stream_id, current + 1 + offset, *row)
                for offset, row in enumerate(append.rows)
            ],
        )
        return current + count

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await asyncio.get_running_loop().run_in_executor(self._executor, connection.close)
        self._executor.shutdown(wait=False)


def _translated(error: BaseException) -> BaseException:
    """sqlite3's errors as SQLAlchemy's, like every other path of the store raises them."""
    if isinstance(error, sqlite3.Error):
        translated: Any = DBAPIError.instance(_INSERT, None, error, sqlite3.Error)
        return translated  # type: ignore[no-any-return]
    return error
