"""`SqlInbox`: reading and marking the in-app inbox, on SQLite and PostgreSQL. Its rows are
written by `SqlDeliveries.put_in_inbox`, with the delivery they are."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from townhall.notifications.adapters.sql.rows import aware
from townhall.notifications.adapters.tables import inbox
from townhall.notifications.ports import InboxItem
from townhall.platform.db import Database


class SqlInbox:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def page(self, user_id: str, before: str | None, limit: int) -> list[InboxItem]:
        query = sa.select(inbox).where(inbox.c.user_id == user_id)
        if before is not None:
            query = query.where(inbox.c.id < before)
        query = query.order_by(inbox.c.id.desc()).limit(limit)
        async with self._db.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            InboxItem(
                r.id,
                r.category,
                r.subject,
                r.body,
                r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC),
                aware(r.read_at),
            )
            for r in rows
        ]

    async def unread(self, user_id: str) -> int:
        query = sa.select(sa.func.count()).where(
            inbox.c.user_id == user_id, inbox.c.read_at.is_(None)
        )
        async with self._db.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def mark_read(self, user_id: str, item_id: str | None, at: datetime) -> int | None:
        query = inbox.update().where(inbox.c.user_id == user_id, inbox.c.read_at.is_(None))
        async with self._db.transaction() as conn:
            if item_id is not None:
                exists = sa.select(inbox.c.id).where(
                    inbox.c.user_id == user_id, inbox.c.id == item_id
                )
                if (await conn.execute(exists)).first() is None:
                    return None
                query = query.where(inbox.c.id == item_id)
            return int((await conn.execute(query.values(read_at=at))).rowcount)
