"""SQLite appends on dedicated connections: inline when the write lock is free, else queued.

SQLite has a single writer and, in WAL mode with synchronous=NORMAL, an uncontended append
is a few microseconds of work with no fsync: cheaper than the thread hop it would take to
send it elsewhere. So this process's own appends (those not joining a caller's transaction)
first try to take the write lock without waiting (busy_timeout 0) on a connection used from
the event loop's thread, and run there. That connection never waits for a lock and never
checkpoints (wal_autocheckpoint=0); the writer thread runs a passive checkpoint every
`CHECKPOINT_EVERY` inline commits instead, so the loop never pays for an fsync.

When the lock is taken (a caller's open transaction, another process) or appends are
already queued, the append is queued here and written by a second connection on its own
thread, which waits for the lock (busy_timeout): a whole batch of appends that arrived
meanwhile costs one thread hop and one commit. Each append in a batch runs under its own
SAVEPOINT, so it stays all-or-nothing and a stale expected version writes nothing while the
others commit. A caller's future resolves only after the commit that holds its events.

Positions are the rowids SQLite assigns on insert under its write lock (BEGIN IMMEDIATE), as
on every other SQLite append path, so they are handed out in commit order; other
connections (a caller's transaction, another process) queue on that lock through
busy_timeout.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError

from townhall.platform.eventstore.adapters.schema import STREAM_VERSION, Row, number

log = logging.getLogger(__name__)

# SQLite's insert of a numbered row (`schema.number`), on these connections and a caller's.
# No position: it is the rowid, one more than the largest, assigned under the write lock.
INSERT = (
    "INSERT INTO eventstore_events (stream_id, version, event_id, type, schema_version, data,"
    " metadata, recorded_at) VALUES (:stream_id, :version, :event_id, :type, :schema_version,"
    " :data, :metadata, :recorded_at)"
)
CHECKPOINT_EVERY = 500


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
        self._inline: sqlite3.Connection | None = None
        self._since_checkpoint = 0
        self._checkpointing: asyncio.Future[None] | None = None
        self._pending: list[_Append] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, stream_id: str, rows: Sequence[Row], expected: int) -> int | Conflict:
        """The stream's new version, or a `Conflict`, once the append is committed."""
        if self._flusher is None:
            done = self._try_inline(stream_id, rows, expected)
            if done is not None:
                return done
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

    # -- inline, on the event loop's thread -------------------------------------------------

    def _try_inline(
        self, stream_id: str, rows: Sequence[Row], expected: int
    ) -> int | Conflict | None:
        """Append now if the write lock is free; None (nothing done) if it is not."""
        conn = self._inline_connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise _translated(error) from error
        try:
            result = self._append(conn, stream_id, expected, rows)
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise _translated(error) from error
            raise
        if not isinstance(result, Conflict) and rows:
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY and self._checkpointing is None:
                self._since_checkpoint = 0
                self._checkpointing = asyncio.get_running_loop().run_in_executor(
                    self._executor, self._checkpoint
                )
                self._checkpointing.add_done_callback(self._checkpointed)
        return result

    def read(self, query: str, args: dict[str, Any]) -> list[Any] | None:
        """Rows of a read on the inline connection; None if SQLite answered busy.

        In WAL mode a read never waits for a writer, so this runs on the loop's thread too;
        it is the same per-row work the loop would do anyway to turn rows into events.
        """
        conn = self._inline_connection()
        try:
            return conn.execute(query, args).fetchall()
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise _translated(error) from error

    def _inline_connection(self) -> sqlite3.Connection:
        if self._inline is None:
            self._inline = self._open(busy_timeout=0.0)
            self._inline.execute("PRAGMA wal_autocheckpoint=0")
        return self._inline

    def _checkpointed(self, future: asyncio.Future[None]) -> None:
        self._checkpointing = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("eventstore: WAL checkpoint failed", exc_info=future.exception())

    # -- on the writer thread ---------------------------------------------------------------

    def _open(self, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=busy_timeout,
            isolation_level=None,  # BEGIN is issued here, IMMEDIATE
            check_same_thread=False,
        )
        # The same settings as townhall.platform.db gives its own connections.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._open(self._busy_timeout)
        return self._connection

    def _checkpoint(self) -> None:
        self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _write(self, batch: list[_Append]) -> list[int | Conflict | BaseException]:
        conn = self._connect()
        alone = len(batch) == 1
        results: list[int | Conflict | BaseException] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for append in batch:
                if alone:
                    results.append(
                        self._append(conn, append.stream_id, append.expected, append.rows)
                    )
                    continue
                conn.execute("SAVEPOINT eventstore_append")
                try:
                    results.append(
                        self._append(conn, append.stream_id, append.expected, append.rows)
                    )
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
    def _append(
        conn: sqlite3.Connection, stream_id: str, expected: int, rows: Sequence[Row]
    ) -> int | Conflict:
        current: int = conn.execute(STREAM_VERSION, {"stream_id": stream_id}).fetchone()[0]
        if expected >= 0 and current != expected:
            return Conflict(current)
        if rows:
            conn.executemany(INSERT, number(rows, current))
        return current + len(rows)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        if self._inline is not None:
            inline, self._inline = self._inline, None
            inline.close()
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await asyncio.get_running_loop().run_in_executor(self._executor, connection.close)
        self._executor.shutdown(wait=False)


def _translated(error: BaseException) -> BaseException:
    """sqlite3's errors as SQLAlchemy's, like every other path of the store raises them."""
    if isinstance(error, sqlite3.Error):
        translated: Any = DBAPIError.instance(INSERT, None, error, sqlite3.Error)
        return translated  # type: ignore[no-any-return]
    return error
