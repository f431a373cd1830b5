"""Chat's stores on SQLAlchemy Core (SQLite and PostgreSQL): rooms and members in the main
database, messages on a room's shard.

A room's seq comes from its counter row in `chat_room_seqs`: one upsert bumps it and returns
the new value, holding the row lock until the message's transaction ends, so concurrent sends
to one room get consecutive seqs, and a rolled-back send leaves no gap.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from townhall.chat.adapters.tables import members, messages, room_seqs, rooms
from townhall.chat.domain import Appended, ChatMessage, DuplicateSend, Room, RoomMoved
from townhall.platform.db import aware, connection, dialect_insert
from townhall.platform.transaction import Transaction


class SqlRooms:
    async def add(self, tx: Transaction, room: Room, *, direct_key: str | None = None) -> Room:
        conn = connection(tx)
        row = {
            "id": room.id,
            "name": room.name,
            "owner": room.owner,
            "direct_key": direct_key,
            "shard": "",
            "created_at": room.created_at,
        }
        if direct_key is not None:
            inserted = await conn.execute(
                dialect_insert(conn)(rooms)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["direct_key"])
                .returning(rooms.c.id)
            )
            if inserted.first() is None:
                existing = await conn.scalar(
                    sa.select(rooms.c.id).where(rooms.c.direct_key == direct_key)
                )
                found = await self.get(tx, str(existing))
                assert found is not None
                return found
        else:
            await conn.execute(rooms.insert().values(**row))
        await conn.execute(
            members.insert(),
            [
                {"room_id": room.id, "user_id": user, "joined_at": room.created_at}
                for user in room.members
            ],
        )
        return room

    async def get(self, tx: Transaction, room_id: str) -> Room | None:
        conn = connection(tx)
        row = (await conn.execute(rooms.select().where(rooms.c.id == room_id))).first()
        if row is None:
            return None
        users = await conn.scalars(
            sa.select(members.c.user_id)
            .where(members.c.room_id == room_id)
            .order_by(members.c.joined_at, members.c.user_id)
        )
        return _room(row, tuple(users))

    async def membership(self, tx: Transaction, room_id: str, user_id: str) -> str | None:
        """The room's shard when `user_id` is a member of it, else None."""
        conn = connection(tx)
        shard = await conn.scalar(
            sa.select(rooms.c.shard)
            .join(members, members.c.room_id == rooms.c.id)
            .where(rooms.c.id == room_id, members.c.user_id == user_id)
        )
        return None if shard is None else str(shard)

    async def members_of(self, tx: Transaction, room_id: str) -> list[str]:
        conn = connection(tx)
        users = await conn.scalars(
            sa.select(members.c.user_id)
            .where(members.c.room_id == room_id)
            .order_by(members.c.joined_at, members.c.user_id)
        )
        return list(users)

    async def rooms_of(self, tx: Transaction, user_id: str) -> list[Room]:
        conn = connection(tx)
        mine = sa.select(members.c.room_id).where(members.c.user_id == user_id)
        found = (
            await conn.execute(
                rooms.select().where(rooms.c.id.in_(mine)).order_by(rooms.c.created_at.desc())
            )
        ).all()
        if not found:
            return []
        everyone: dict[str, list[str]] = {}
        for row in await conn.execute(
            sa.select(members.c.room_id, members.c.user_id)
            .where(members.c.room_id.in_(mine))
            .order_by(members.c.joined_at, members.c.user_id)
        ):
            everyone.setdefault(row.room_id, []).append(row.user_id)
        return [_room(row, tuple(everyone.get(row.id, ()))) for row in found]

    async def room_ids_of(self, tx: Transaction, user_id: str) -> list[str]:
        conn = connection(tx)
        return list(
            await conn.scalars(sa.select(members.c.room_id).where(members.c.user_id == user_id))
        )

    async def add_member(self, tx: Transaction, room_id: str, user_id: str, at: datetime) -> bool:
        conn = connection(tx)
        inserted = await conn.execute(
            dialect_insert(conn)(members)
            .values(room_id=room_id, user_id=user_id, joined_at=at)
            .on_conflict_do_nothing()
        )
        return bool(inserted.rowcount)

    async def remove_member(self, tx: Transaction, room_id: str, user_id: str) -> bool:
        conn = connection(tx)
        deleted = await conn.execute(
            members.delete().where(members.c.room_id == room_id, members.c.user_id == user_id)
        )
        return bool(deleted.rowcount)

    async def member_count(self, tx: Transaction, room_id: str) -> int:
        conn = connection(tx)
        count = await conn.scalar(
            sa.select(sa.func.count()).select_from(members).where(members.c.room_id == room_id)
        )
        return int(count or 0)

    async def read_marks(self, tx: Transaction, user_id: str) -> dict[str, int]:
        conn = connection(tx)
        found = await conn.execute(
            sa.select(members.c.room_id, members.c.last_read_seq).where(
                members.c.user_id == user_id
            )
        )
        return {row.room_id: int(row.last_read_seq) for row in found}

    async def mark_read(self, tx: Transaction, room_id: str, user_id: str, seq: int) -> None:
        conn = connection(tx)
        await conn.execute(
            members.update()
            .where(
                members.c.room_id == room_id,
                members.c.user_id == user_id,
                members.c.last_read_seq < seq,
            )
            .values(last_read_seq=seq)
        )

    async def placements(
        self, tx: Transaction, room_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        conn = connection(tx)
        query = sa.select(rooms.c.id, rooms.c.shard)
        if room_ids is not None:
            query = query.where(rooms.c.id.in_(list(room_ids)))
        found = await conn.execute(query)
        return {row.id: row.shard for row in found}

    async def shard_of(self, tx: Transaction, room_id: str) -> str | None:
        conn = connection(tx)
        shard = await conn.scalar(sa.select(rooms.c.shard).where(rooms.c.id == room_id))
        return None if shard is None else str(shard)

    async def place(self, tx: Transaction, room_id: str, shard: str) -> None:
        conn = connection(tx)
        await conn.execute(rooms.update().where(rooms.c.id == room_id).values(shard=shard))


def _room(row: Any, users: tuple[str, ...]) -> Room:
    return Room(
        id=row.id,
        name=row.name,
        owner=row.owner,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        members=users,
        direct=row.direct_key is not None,
    )


def _message(row: Any) -> ChatMessage:
    deleted = row.deleted_at is not None
    return ChatMessage(
        id=row.id,
        room=row.room_id,
        seq=int(row.seq),
        author=row.author,
        body="" if deleted else row.body,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        client_id=row.client_id,
        attachments=tuple(row.attachments or ()),
        edited_at=aware(row.edited_at),
        deleted=deleted,
    )


class SqlMessages:
    """One shard's messages (the same tables on every shard)."""

    def __init__(self, shard: str = "") -> None:
        self.shard = shard

    async def append(
        self,
        tx: Transaction,
        room_id: str,
        author: str,
        body: str,
        client_id: str,
        attachments: Sequence[str],
        at: datetime,
        message_id: str,
    ) -> Appended:
        conn = connection(tx)
        before = await self._by_client_id(conn, room_id, author, client_id)
        if before is not None:
            return Appended(before, created=False)
        bumped = (
            await conn.execute(
                dialect_insert(conn)(room_seqs)
                .values(room_id=room_id, last_seq=1)
                .on_conflict_do_update(
                    index_elements=["room_id"], set_={"last_seq": room_seqs.c.last_seq + 1}
                )
                .returning(room_seqs.c.last_seq, room_seqs.c.moved_to)
            )
        ).one()
        if bumped.moved_to is not None:
            raise RoomMoved(room_id, bumped.moved_to)
        message = ChatMessage(
            id=message_id,
            room=room_id,
            seq=int(bumped.last_seq),
            author=author,
            body=body,
            created_at=at,
            client_id=client_id,
            attachments=tuple(attachments),
        )
        try:
            await conn.execute(
                messages.insert().values(
                    id=message.id,
                    room_id=room_id,
                    seq=message.seq,
                    author=author,
                    client_id=client_id,
                    body=body,
                    attachments=list(attachments),
                    created_at=at,
                )
            )
        except IntegrityError:
            # The same client_id, stored by a concurrent send of it since we looked (the
            # counter row lock made us wait for it). The caller rolls back, and the seq we
            # took with it, and reads that message.
            raise DuplicateSend(room_id, author, client_id) from None
        return Appended(message, created=True)

    async def by_client_id(
        self, tx: Transaction, room_id: str, author: str, client_id: str
    ) -> ChatMessage | None:
        return await self._by_client_id(connection(tx), room_id, author, client_id)

    async def _by_client_id(
        self, conn: Any, room_id: str, author: str, client_id: str
    ) -> ChatMessage | None:
        row = (
            await conn.execute(
                messages.select().where(
                    messages.c.room_id == room_id,
                    messages.c.author == author,
                    messages.c.client_id == client_id,
                )
            )
        ).first()
        return None if row is None else _message(row)

    async def since(
        self, tx: Transaction, room_id: str, after_seq: int, limit: int
    ) -> list[ChatMessage]:
        conn = connection(tx)
        found = await conn.execute(
            messages.select()
            .where(messages.c.room_id == room_id, messages.c.seq > after_seq)
            .order_by(messages.c.seq)
            .limit(limit)
        )
        return [_message(row) for row in found]

    async def before(
        self, tx: Transaction, room_id: str, before_seq: int | None, limit: int
    ) -> list[ChatMessage]:
        conn = connection(tx)
        query = messages.select().where(messages.c.room_id == room_id)
        if before_seq is not None:
            query = query.where(messages.c.seq < before_seq)
        found = await conn.execute(query.order_by(messages.c.seq.desc()).limit(limit))
        return [_message(row) for row in found]

    async def last_seqs(self, tx: Transaction, room_ids: Collection[str]) -> dict[str, int]:
        if not room_ids:
            return {}
        conn = connection(tx)
        found = await conn.execute(
            sa.select(room_seqs.c.room_id, room_seqs.c.last_seq).where(
                room_seqs.c.room_id.in_(list(room_ids))
            )
        )
        return {row.room_id: int(row.last_seq) for row in found}

    async def last_messages(
        self, tx: Transaction, room_ids: Collection[str]
    ) -> dict[str, ChatMessage]:
        if not room_ids:
            return {}
        conn = connection(tx)
        found = await conn.execute(
            messages.select()
            .join(
                room_seqs,
                sa.and_(
                    room_seqs.c.room_id == messages.c.room_id,
                    room_seqs.c.last_seq == messages.c.seq,
                ),
            )
            .where(room_seqs.c.room_id.in_(list(room_ids)))
        )
        return {row.room_id: _message(row) for row in found}

    async def oldest_seq(self, tx: Transaction, room_id: str) -> int | None:
        conn = connection(tx)
        oldest = await conn.scalar(
            sa.select(sa.func.min(messages.c.seq)).where(messages.c.room_id == room_id)
        )
        return None if oldest is None else int(oldest)

    async def get(self, tx: Transaction, room_id: str, message_id: str) -> ChatMessage | None:
        conn = connection(tx)
        row = (
            await conn.execute(
                messages.select().where(messages.c.room_id == room_id, messages.c.id == message_id)
            )
        ).first()
        return None if row is None else _message(row)

    async def hold(self, tx: Transaction, room_id: str) -> None:
        """Keep the room's history here for this transaction (PostgreSQL: a shared lock on its
        counter row, which a move's lock waits on; SQLite's write transactions are one at a
        time already). Raises `RoomMoved` when it left this shard."""
        conn = connection(tx)
        query = sa.select(room_seqs.c.moved_to).where(room_seqs.c.room_id == room_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        moved_to = await conn.scalar(query)
        if moved_to is not None:
            raise RoomMoved(room_id, moved_to)

    async def edit(
        self, tx: Transaction, room_id: str, message_id: str, body: str, at: datetime
    ) -> ChatMessage | None:
        conn = connection(tx)
        await conn.execute(
            messages.update()
            .where(
                messages.c.room_id == room_id,
                messages.c.id == message_id,
                messages.c.deleted_at.is_(None),
            )
            .values(body=body, edited_at=at)
        )
        return await self.get(tx, room_id, message_id)

    async def delete(
        self, tx: Transaction, room_id: str, message_id: str, at: datetime
    ) -> ChatMessage | None:
        conn = connection(tx)
        await conn.execute(
            messages.update()
            .where(
                messages.c.room_id == room_id,
                messages.c.id == message_id,
                messages.c.deleted_at.is_(None),
            )
            .values(body="", attachments=[], deleted_at=at)
        )
        return await self.get(tx, room_id, message_id)

    async def prune(self, tx: Transaction, older_than: datetime) -> int:
        conn = connection(tx)
        deleted = await conn.execute(
            messages.delete().where(
                messages.c.created_at < older_than,
                # A room's last message stays: its seq is where the room's stream is.
                ~sa.exists().where(
                    room_seqs.c.room_id == messages.c.room_id,
                    room_seqs.c.last_seq == messages.c.seq,
                ),
            )
        )
        return int(deleted.rowcount or 0)
