"""Moving a room's history between shards on SQLAlchemy Core (SQLite and PostgreSQL), and the
shards a rebalance sees: those `TOWNHALL_CHAT_SHARDS` lists, plus the retired ones it empties.

The lock that keeps sends out while a room moves is the room's counter row in
`chat_room_seqs`, the row every send bumps (`SqlMessages.append`): a send that reaches it
after the move committed reads `moved_to` and goes to the new shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from townhall.chat.adapters.shards import DatabaseShards, shard_name
from townhall.chat.adapters.tables import messages, room_seqs
from townhall.config import DATABASE_SCHEMES
from townhall.platform.db import Database, aware, connection, dialect_insert
from townhall.platform.transaction import Transaction

_DATETIMES = ("created_at", "edited_at", "deleted_at")
_BATCH = 1000  # messages per INSERT while copying


class SqlShardMover:
    async def hold(self, tx: Transaction, room_id: str) -> str | None:
        conn = connection(tx)
        # An upsert that changes nothing, rather than SELECT ... FOR UPDATE: it locks the row
        # when it exists and makes it when it does not, so a first send to a room that never
        # had one here cannot slip in beside the move. On SQLite the transaction holds the
        # database's write lock from BEGIN IMMEDIATE already.
        moved_to = await conn.scalar(
            dialect_insert(conn)(room_seqs)
            .values(room_id=room_id, last_seq=0)
            .on_conflict_do_update(
                index_elements=["room_id"], set_={"last_seq": room_seqs.c.last_seq}
            )
            .returning(room_seqs.c.moved_to)
        )
        return None if moved_to is None else str(moved_to)

    async def copy(self, source: Transaction, target: Transaction, room_id: str) -> int:
        src, dst = connection(source), connection(target)
        last_seq = await src.scalar(
            sa.select(room_seqs.c.last_seq).where(room_seqs.c.room_id == room_id)
        )
        found = await src.execute(
            messages.select().where(messages.c.room_id == room_id).order_by(messages.c.seq)
        )
        rows = [
            {key: aware(value) if key in _DATETIMES else value for key, value in row.items()}
            for row in found.mappings()
        ]
        # What the target holds of the room is a copy left by a run that stopped before the
        # source said the room moved: the source's history replaces it.
        await dst.execute(messages.delete().where(messages.c.room_id == room_id))
        for start in range(0, len(rows), _BATCH):
            await dst.execute(messages.insert(), rows[start : start + _BATCH])
        await dst.execute(
            dialect_insert(dst)(room_seqs)
            .values(room_id=room_id, last_seq=int(last_seq or 0), moved_to=None)
            .on_conflict_do_update(
                index_elements=["room_id"],
                set_={"last_seq": int(last_seq or 0), "moved_to": None},
            )
        )
        return len(rows)

    async def mark_moved(self, tx: Transaction, room_id: str, shard: str) -> None:
        conn = connection(tx)
        await conn.execute(
            room_seqs.update().where(room_seqs.c.room_id == room_id).values(moved_to=shard)
        )

    async def moved_away(self, tx: Transaction) -> dict[str, str]:
        conn = connection(tx)
        found = await conn.execute(
            sa.select(room_seqs.c.room_id, room_seqs.c.moved_to).where(
                room_seqs.c.moved_to.is_not(None)
            )
        )
        return {row.room_id: row.moved_to for row in found}

    async def clear(self, tx: Transaction, room_id: str) -> int:
        conn = connection(tx)
        deleted = await conn.execute(
            messages.delete().where(
                messages.c.room_id == room_id,
                sa.exists().where(
                    room_seqs.c.room_id == room_id, room_seqs.c.moved_to.is_not(None)
                ),
            )
        )
        return int(deleted.rowcount or 0)

    async def count(self, tx: Transaction, room_id: str) -> int:
        conn = connection(tx)
        counted = await conn.scalar(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.room_id == room_id)
        )
        return int(counted or 0)


def check_database_url(url: str, where: str) -> None:
    """A `ValueError` naming `where` when `url` is not a database URL Townhall can use."""
    try:
        make_url(url)
    except ArgumentError:
        raise ValueError(f"{where}: {url!r} is not a database URL") from None
    scheme = url.split("://", 1)[0]
    if scheme not in DATABASE_SCHEMES:
        raise ValueError(
            f"{where}: unknown URL scheme {scheme!r}; use one of {', '.join(DATABASE_SCHEMES)}"
        )


class ShardDirectory:
    """The shards of a rebalance: those the ring places rooms on (`TOWNHALL_CHAT_SHARDS`),
    and retired ones (no longer listed) whose rooms are read and moved off them."""

    def __init__(self, shards: DatabaseShards, retired: Sequence[str] = ()) -> None:
        self._shards = shards
        self._retired: dict[str, Database] = {}
        for url in retired:
            check_database_url(url, "--retire")
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
                # Opening it would make an empty one.
                raise ValueError(f"--retire: {parsed.database} is not a file")
            name = shard_name(url)
            if name in shards.ring:
                raise ValueError(
                    f"--retire: {name} is in TOWNHALL_CHAT_SHARDS; take it out of the list "
                    "first (rooms move off a shard the ring no longer gives them)"
                )
            if name not in self._retired:
                self._retired[name] = shards.main if name == shards.main_name else Database(url)

    @property
    def names(self) -> list[str]:
        return sorted({*self._shards.names, *self._retired})

    @property
    def retired(self) -> list[str]:
        return sorted(self._retired)

    def owner(self, room_id: str) -> str:
        return self._shards.owner(room_id)

    async def check_retired(self) -> None:
        """A `ValueError` naming a retired shard that holds no chat tables (a wrong URL)."""
        for name, database in self._retired.items():
            async with database.connect() as conn:
                found = await conn.run_sync(lambda sync: sa.inspect(sync).has_table(room_seqs.name))
            if not found:
                raise ValueError(f"{name} holds no chat message tables")

    def database(self, shard: str) -> Database:
        if shard in self._retired:
            return self._retired[shard]
        return self._shards.database(shard)

    async def create_tables(self) -> None:
        """The message tables on every listed shard (a new one has none until a chat
        process starts on the new list)."""
        await self._shards.create_tables()

    async def close(self) -> None:
        for database in self._retired.values():
            if database is not self._shards.main:
                await database.dispose()
        await self._shards.close()
