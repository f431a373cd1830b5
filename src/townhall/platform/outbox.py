"""The transactional outbox: a use case enqueues envelopes on its own transaction's connection,
and a relay publishes them once committed, per key in commit order, then marks them sent.

Wake-ups: NOTIFY on PostgreSQL (sent by a trigger on the table, so from any process), a
commit hook in this process on SQLite; a slow poll is only the fallback. Several relays may
run: each takes shards of keys under an advisory lock (PostgreSQL) or the write lock (SQLite),
so an envelope is published once in the normal case; a relay killed mid-batch rolls back, and
the batch is published again (consumers dedupe).

A row is settled once its message is safe: on a broker, as soon as it is published
(`settled_at` is written with `sent_at`); on the in-process bus, whose messages die with the
process, only once every consumer group has acked or dead-lettered it. A relay on the
in-process bus publishes again, when it starts, the rows published but not settled before a
crash (consumers dedupe those too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.platform.db import Database
from townhall.platform.messaging.envelope import Envelope, check_name
from townhall.platform.messaging.ports import Handler, MessageBus

log = logging.getLogger(__name__)

CHANNEL = "townhall_outbox"
SHARDS = 16
LOCK_BASE = 7275727300  # advisory lock ids of the relay's shards: LOCK_BASE + shard

metadata = sa.MetaData()
outbox_messages = sa.Table(
    "outbox_messages",
    metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("key", sa.String(500), nullable=False),
    sa.Column("shard", sa.Integer(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
)
outbox_inbox = sa.Table(
    "outbox_inbox",
    metadata,
    sa.Column("group_name", sa.String(200), primary_key=True),
    sa.Column("envelope_id", sa.String(36), primary_key=True),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
)

# PostgreSQL: the rows of one enqueue in one statement, whatever their number (one array per
# column, so the statement's text, and its prepared plan, never change). Before its first row
# takes a position, it takes the advisory lock of every key, held to the end of the
# transaction: two transactions enqueueing one key commit one after the other, so positions
# of a key follow commit order and the relay never overtakes an uncommitted earlier row. The
# locks go in the order of their ids, so two transactions enqueueing overlapping keys cannot
# each hold a lock the other waits for (two keys may share a hash: ordering by key would not
# do). The WHERE is a one-time filter, evaluated before any row is produced.
_PG_INSERT = (
    "INSERT INTO outbox_messages (id, topic, key, shard, body, created_at) "
    "SELECT m.id, m.topic, m.key, m.shard, m.body, CAST(:outbox_at AS timestamptz) "
    "FROM unnest(CAST(:outbox_ids AS varchar[]), CAST(:outbox_topics AS varchar[]), "
    "CAST(:outbox_keys AS varchar[]), CAST(:outbox_shards AS integer[]), "
    "CAST(:outbox_bodies AS text[])) AS m(id, topic, key, shard, body) "
    "WHERE (SELECT count(pg_advisory_xact_lock(lock_id)) FROM "
    "(SELECT DISTINCT hashtext(k) AS lock_id FROM unnest(CAST(:outbox_keys AS text[])) AS k "
    "ORDER BY lock_id) AS ordered) >= 0"
)
_PG_ENQUEUE = sa.text(_PG_INSERT)
# Rows marked by position: on PostgreSQL one statement text for any number of rows (an array
# parameter), on SQLite in chunks of positions under its limit of bound values.
_MARK_CHUNK = 5000
_PG_POSITIONS = outbox_messages.c.position == sa.any_(
    sa.cast(sa.bindparam("positions"), postgresql.ARRAY(sa.BigInteger()))
)

_ENQUEUE_CTE = f"outbox_enqueued AS ({_PG_INSERT})"


class EnqueueingStatement:
    """PostgreSQL: a module's own writes and an enqueue in one statement, for a hot path that
    wants one round trip (and, on an autocommit connection or the driver path, no BEGIN or
    COMMIT). The outbox rows commit, or not, with the module's rows.

    `ctes` are the module's data-modifying common table expressions, as they would follow
    `WITH` (`name AS (INSERT ...), other AS (UPDATE ...)`); the outbox adds its own and the
    statement ends `SELECT 1`. Its parameter names start `outbox_`: the module's must not.
    Build one per statement, once (its text never changes, so its prepared plan is reused);
    `run` it with the module's parameters and the messages `(topic, envelope)` to enqueue."""

    def __init__(self, ctes: str = "") -> None:
        own = f"{ctes}, " if ctes else ""
        self.statement = sa.text(f"WITH {own}{_ENQUEUE_CTE} SELECT 1")

    def parameters(
        self, own: Mapping[str, Any], messages: Sequence[tuple[str, Envelope]]
    ) -> dict[str, Any]:
        clash = [name for name in own if name.startswith("outbox_")]
        if clash:
            raise ValueError(f"parameter names starting outbox_ are the outbox's: {clash}")
        return {**own, **_enqueue_parameters(messages)}

    async def run(
        self,
        database: Database,
        parameters: Mapping[str, Any],
        messages: Sequence[tuple[str, Envelope]],
    ) -> None:
        """On the database's driver path, as a unit of work that commits by itself."""
        await database.run_on_driver(self.statement, self.parameters(parameters, messages))

    async def execute(
        self,
        conn: AsyncConnection,
        parameters: Mapping[str, Any],
        messages: Sequence[tuple[str, Envelope]],
    ) -> None:
        """On `conn`: inside its transaction, or committing by itself on an autocommit one."""
        await conn.execute(self.statement, self.parameters(parameters, messages))


def _check_topics(messages: Sequence[tuple[str, Envelope]]) -> None:
    for topic in {topic for topic, _ in messages}:
        check_name("topic", topic)


def _enqueue_parameters(messages: Sequence[tuple[str, Envelope]]) -> dict[str, Any]:
    """The parameters of `_PG_INSERT` for `(topic, envelope)` pairs."""
    _check_topics(messages)
    return {
        "outbox_at": datetime.now(UTC),
        "outbox_ids": [str(e.id) for _, e in messages],
        "outbox_topics": [topic for topic, _ in messages],
        "outbox_keys": [e.key for _, e in messages],
        "outbox_shards": [_shard(e.key) for _, e in messages],
        "outbox_bodies": [e.to_bytes().decode() for _, e in messages],
    }


_TRY_LOCK_SHARDS = sa.text(
    "SELECT shard FROM generate_series(0, :shards - 1) AS shard "
    "WHERE pg_try_advisory_xact_lock(CAST(:base AS bigint) + shard) ORDER BY shard"
)

# Databases whose unsettled rows this process has published again (`OutboxRelay.recover`).
_recovered: set[str] = set()

# SQLite wake-ups: one event per database URL, set when a transaction that enqueued commits.
_signals: dict[str, asyncio.Event] = {}


def _signal(url: str) -> asyncio.Event:
    return _signals.setdefault(url, asyncio.Event())


def _on_commit(url: str) -> Callable[[Any], None]:
    def commit(conn: Any) -> None:
        if conn.info.pop("outbox_dirty", False) and url in _signals:
            _signals[url].set()

    return commit


def _shard(key: str) -> int:
    return zlib.crc32(key.encode()) % SHARDS


async def enqueue(conn: AsyncConnection, topic: str, *envelopes: Envelope) -> None:
    """Write `envelopes` to the outbox in the caller's transaction; they go out on commit."""
    check_name("topic", topic)
    await enqueue_all(conn, [(topic, e) for e in envelopes])


async def enqueue_all(conn: AsyncConnection, messages: Sequence[tuple[str, Envelope]]) -> None:
    """`enqueue` for `(topic, envelope)` pairs of any topics, in one statement."""
    if not messages:
        return
    if conn.dialect.name == "postgresql":  # the table's trigger NOTIFYs (outbox_0002)
        await conn.execute(_PG_ENQUEUE, _enqueue_parameters(messages))
        return
    _check_topics(messages)
    now = datetime.now(UTC)
    rows = [
        {
            "id": str(e.id),
            "topic": topic,
            "key": e.key,
            "shard": _shard(e.key),
            "body": e.to_bytes().decode(),
            "created_at": now,
        }
        for topic, e in messages
    ]
    await conn.execute(outbox_messages.insert(), rows)
    conn.sync_connection.info["outbox_dirty"] = True  # type: ignore[union-attr]


class OutboxRelay:
    """Publishes committed outbox rows. `start()`/`stop()` for `townhall serve`; `run()` for
    `townhall relay`.

    Woken by a commit, the relay lingers a moment (`linger`) before it reads: commits keep
    coming while the system is busy, and without it each commit's rows went alone, a
    transaction of four round trips and a publish each. The cost is that much latency before
    a message is published."""

    def __init__(
        self,
        database: Database,
        bus: MessageBus,
        *,
        batch_size: int = 500,
        poll_interval: float = 5.0,
        retention: timedelta = timedelta(days=7),
        prune_interval: float = 300.0,
        linger: float = 0.01,
    ) -> None:
        self.database = database
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.prune_interval = prune_interval
        self.linger = linger
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        # The in-process bus: positions of rows whose message every group is done with,
        # written as settled with the relay's next batch.
        self._in_process = bus.in_process
        self._settled: list[int] = []
        if database.is_sqlite:
            self._wake = _signal(database.url)
            hook = _on_commit(database.url)
            if not event.contains(database.engine.sync_engine, "commit", hook):
                event.listen(database.engine.sync_engine, "commit", hook)

    async def publish_batch(self) -> int:
        """Publish one batch of committed, unsent rows; the number published. On the
        in-process bus, first write the rows settled since the last batch."""
        async with self._transaction() as conn:
            shards = await self._lock_shards(conn)
            if not shards:
                return 0
            query = (
                sa.select(
                    outbox_messages.c.position, outbox_messages.c.topic, outbox_messages.c.body
                )
                .where(outbox_messages.c.sent_at.is_(None), outbox_messages.c.shard.in_(shards))
                .order_by(outbox_messages.c.position)
                .limit(self.batch_size)
            )
            if self.database.is_postgresql:
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            await self._publish(rows)
            if rows:
                positions = [row.position for row in rows]
                now = datetime.now(UTC)
                # On the in-process bus a row is settled later, once every group is done.
                settled = {} if self._in_process else {"settled_at": now}
                await self._mark(conn, positions, sent_at=now, **settled)
            return len(rows)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that also marks settled the rows the in-process bus said every
        group is done with. If it fails they are kept for the next one (and at worst, after
        a crash, their messages are published again: consumers dedupe)."""
        settled, self._settled = self._settled, []
        try:
            async with self.database.transaction() as conn:
                if settled:
                    await self._mark(conn, settled, settled_at=datetime.now(UTC))
                yield conn
        except BaseException:
            self._settled[:0] = settled
            raise

    async def _mark(self, conn: AsyncConnection, positions: list[int], **values: Any) -> None:
        """Set `values` on the rows at `positions`."""
        update = outbox_messages.update().values(**values)
        if self.database.is_postgresql:
            await conn.execute(update.where(_PG_POSITIONS), {"positions": positions})
            return
        for start in range(0, len(positions), _MARK_CHUNK):
            chunk = positions[start : start + _MARK_CHUNK]
            await conn.execute(update.where(outbox_messages.c.position.in_(chunk)))

    def _on_settled(self, position: int) -> Callable[[], None]:
        def settled() -> None:
            self._settled.append(position)
            self._wake.set()

        return settled

    async def recover(self) -> int:
        """The in-process bus: make rows published but not settled before this process
        started (a crash, or a stop with messages still queued) unsent again, so the relay
        publishes them. The number of rows."""
        async with self.database.transaction() as conn:
            result = await conn.execute(
                outbox_messages.update()
                .where(outbox_messages.c.settled_at.is_(None))
                .where(outbox_messages.c.sent_at.is_not(None))
                .values(sent_at=None)
            )
            return int(result.rowcount)

    async def _publish(self, rows: Sequence[Any]) -> None:
        """Publish rows in position order per key; keys go at once, not one confirm after
        another (a failure fails the batch, which is published again)."""
        by_key: dict[str, list[tuple[str, Envelope, int]]] = {}
        for row in rows:
            envelope = Envelope.from_bytes(row.body.encode())
            by_key.setdefault(envelope.key, []).append((row.topic, envelope, row.position))

        async def in_order(envelopes: list[tuple[str, Envelope, int]]) -> None:
            for topic, envelope, position in envelopes:
                if self._in_process:
                    await self.bus.publish(topic, envelope, on_settled=self._on_settled(position))
                else:
                    await self.bus.publish(topic, envelope)

        async with asyncio.TaskGroup() as group:
            for envelopes in by_key.values():
                group.create_task(in_order(envelopes))

    async def _lock_shards(self, conn: AsyncConnection) -> list[int]:
        if not self.database.is_postgresql:
            return list(range(SHARDS))  # SQLite: the write lock makes this relay the only one
        # Every shard no other relay holds, tried in one statement (not a round trip each).
        locked = await conn.execute(_TRY_LOCK_SHARDS, {"shards": SHARDS, "base": LOCK_BASE})
        return [row.shard for row in locked]

    async def prune(self) -> int:
        """Delete settled rows sent longer ago than `retention`."""
        cutoff = datetime.now(UTC) - self.retention
        async with self._transaction() as conn:
            result = await conn.execute(
                outbox_messages.delete()
                .where(outbox_messages.c.sent_at < cutoff)
                .where(outbox_messages.c.settled_at.is_not(None))
            )
            return int(result.rowcount)

    async def _listen(self) -> None:
        if not self.database.is_postgresql:
            return
        import asyncpg

        dsn = self.database.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        try:
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(CHANNEL, lambda *_: self._wake.set())
        except Exception:
            log.exception("LISTEN failed; the relay falls back to polling")

    async def run(self) -> None:
        """Relay until `stop()`: publish while there is work, else sleep until woken."""
        await self._listen()
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        await self._recover_once()
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    if self.linger:
                        await asyncio.sleep(self.linger)
                    while await self.publish_batch() >= self.batch_size:
                        pass
                    if loop.time() - last_prune > self.prune_interval:
                        last_prune = loop.time()
                        await self.prune()
                except Exception:
                    log.exception("outbox relay batch failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait(), self.poll_interval)
            if self._settled:  # settled while the consumers drained
                try:
                    async with self._transaction():
                        pass
                except Exception:
                    log.exception("writing settled rows failed; they go out again on start")
        finally:
            if self._listener is not None:
                await self._listener.close()

    async def _wait(self) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([stop, wake], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()

    async def start(self) -> None:
        await self._recover_once()  # before any relay of this process publishes
        self._task = asyncio.create_task(self.run())

    async def _recover_once(self) -> None:
        """The in-process bus: `recover` once per process and database. A second relay must
        not take the rows a first one has in flight for rows a crash left."""
        if not self._in_process or self.database.url in _recovered:
            return
        if again := await self.recover():
            log.warning("publishing %s outbox rows again: published, never settled", again)
        _recovered.add(self.database.url)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task


def idempotent(
    database: Database,
    group: str,
    handler: Callable[[AsyncConnection, Envelope], Awaitable[None]],
) -> Handler:
    """A bus handler that runs `handler` at most once per envelope id for `group`: the inbox
    row and the handler's own writes commit (or roll back) in one transaction."""

    async def handle(envelope: Envelope) -> None:
        async with database.transaction() as conn:
            if not await mark_handled(conn, group, envelope):
                return
            await handler(conn, envelope)

    return handle


async def mark_handled(conn: AsyncConnection, group: str, envelope: Envelope) -> bool:
    """Record `envelope` as handled by `group`; False if it already was."""
    return await mark_handled_id(conn, group, str(envelope.id))


async def mark_handled_id(conn: AsyncConnection, group: str, envelope_id: str) -> bool:
    """`mark_handled` by the envelope's id, for a handler that keeps only the id."""
    values = {"group_name": group, "envelope_id": envelope_id, "handled_at": datetime.now(UTC)}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    result = await conn.execute(insert(outbox_inbox).values(**values).on_conflict_do_nothing())
    return bool(result.rowcount)


async def prune_inbox(database: Database, older_than: timedelta) -> int:
    cutoff = datetime.now(UTC) - older_than
    async with database.transaction() as conn:
        result = await conn.execute(outbox_inbox.delete().where(outbox_inbox.c.handled_at < cutoff))
        return int(result.rowcount)
