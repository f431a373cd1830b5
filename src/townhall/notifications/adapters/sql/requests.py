"""`SqlNotificationRequests`: accepted notifications on SQLite and PostgreSQL, with group
commit (concurrent requests share one transaction) and, on PostgreSQL over asyncpg, one
statement per batch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.notifications.adapters.sql.rows import attempt_of, aware, delivery_of
from townhall.notifications.adapters.tables import attempts, deliveries, notifications
from townhall.notifications.domain import Channel, Content, Delivery, DeliveryStatus, Notification
from townhall.notifications.messages import delivery_requests
from townhall.notifications.ports import NewNotification, StoredRequest
from townhall.platform.batching import Batcher
from townhall.platform.db import Database
from townhall.platform.outbox import EnqueueingStatement, enqueue_all

BATCH_SIZE = 100  # at most this many notifications in one group commit

# PostgreSQL: a batch of new notifications without idempotency keys and their PENDING
# deliveries, with the outbox messages asking for those, in one statement (one array per
# column, so the text and its prepared plan never change).
_ADD_AND_ENQUEUE = EnqueueingStatement(
    f"added AS (INSERT INTO {notifications.name} (id, recipient, category, template, data, "
    "subject, body, locale, created_at, requested_by) SELECT * FROM unnest("
    "CAST(:ids AS varchar[]), CAST(:recipients AS varchar[]), CAST(:categories AS varchar[]), "
    "CAST(:templates AS varchar[]), CAST(:data AS json[]), CAST(:subjects AS text[]), "
    "CAST(:bodies AS text[]), CAST(:locales AS varchar[]), CAST(:created AS timestamptz[]), "
    "CAST(:requested_by AS varchar[]))), "
    f"queued AS (INSERT INTO {deliveries.name} (notification_id, channel, status, subject, "
    "body, html, updated_at) SELECT * FROM unnest(CAST(:d_ids AS varchar[]), "
    "CAST(:d_channels AS varchar[]), CAST(:d_statuses AS varchar[]), "
    "CAST(:d_subjects AS text[]), CAST(:d_bodies AS text[]), CAST(:d_html AS text[]), "
    "CAST(:d_updated AS timestamptz[])))"
)


def _deliveries_of(
    items: Sequence[NewNotification], added: Collection[str] | None = None
) -> list[tuple[str, Channel, str]]:
    """(notification id, channel, recipient) of each delivery of `items` (of those `added`)."""
    return [
        (str(n.id), channel, str(n.recipient))
        for n in (item.notification for item in items)
        if added is None or str(n.id) in added
        for channel in n.deliveries
    ]


class SqlNotificationRequests:
    def __init__(self, database: Database) -> None:
        self._db = database
        # Concurrent requests share their transaction: a call waits at most for the batch
        # under way, and every call made meanwhile goes in the next one.
        self._adds = Batcher(self._add_batch, max_size=BATCH_SIZE)

    async def add(self, new: NewNotification) -> bool:
        return await self._adds.submit(new)

    async def by_idempotency_key(self, requested_by: str, key: str) -> StoredRequest | None:
        query = sa.select(notifications.c.id, notifications.c.request_hash).where(
            notifications.c.requested_by == requested_by,
            notifications.c.idempotency_key == key,
        )
        async with self._db.connect() as conn:
            row = (await conn.execute(query)).first()
        return StoredRequest(row.id, row.request_hash) if row else None

    async def get(self, notification_id: str) -> Notification | None:
        async with self._db.connect() as conn:
            return await self._get(conn, notification_id)

    # --- adding, in batches -----------------------------------------------------------------

    async def _add_batch(self, items: Sequence[NewNotification]) -> list[bool | BaseException]:
        """Record the notifications of many requests in one transaction (group commit):
        whether each was added (False: its idempotency key was taken). If the transaction
        fails, each is tried again in its own, so one bad request fails only itself."""
        try:
            return list(await self._add_together(items))
        except Exception:
            if len(items) == 1:
                raise
        outcomes: list[bool | BaseException] = []
        for item in items:
            try:
                outcomes += await self._add_together([item])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _add_together(self, items: Sequence[NewNotification]) -> list[bool]:
        if self._db.has_driver_path and all(item.idempotency_key is None for item in items):
            # Nothing here can be taken already, so all of it is added: one statement that
            # commits by itself writes it and the messages asking for its deliveries, one
            # round trip instead of six (BEGIN, four statements, COMMIT).
            await self._add_in_one_statement(items)
            return [True] * len(items)
        async with self._db.transaction() as conn:
            added = await self._insert(conn, items)
            await enqueue_all(conn, delivery_requests(_deliveries_of(items, added)))
        return [str(item.notification.id) in added for item in items]

    async def _insert(self, conn: AsyncConnection, new: Sequence[NewNotification]) -> set[str]:
        """Insert notifications and their PENDING deliveries, two statements for all: the ids
        inserted. One whose (requester, idempotency key) is taken, by an earlier notification
        or an earlier one of `new`, is not inserted (nothing of it is written).

        The keys are claimed by `INSERT ... ON CONFLICT DO NOTHING`, not by catching a unique
        violation inside a savepoint per row."""
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(notifications)
            .on_conflict_do_nothing(index_elements=["requested_by", "idempotency_key"])
            .returning(notifications.c.id)
        )
        rows = [
            {
                "id": str(item.notification.id),
                "recipient": str(item.notification.recipient),
                "category": item.notification.category,
                "template": item.notification.content.template,
                "data": dict(item.notification.content.data),
                "subject": item.notification.content.subject,
                "body": item.notification.content.body,
                "locale": item.notification.locale,
                "created_at": item.notification.created_at,
                "requested_by": item.requested_by,
                "idempotency_key": item.idempotency_key,
                "request_hash": item.request_hash,
            }
            for item in new
        ]
        added = set((await conn.execute(statement, rows)).scalars())
        delivery_rows = [
            {
                "notification_id": str(item.notification.id),
                "channel": channel.value,
                "status": DeliveryStatus.PENDING.value,
                "subject": item.renderings[channel].subject,
                "body": item.renderings[channel].body,
                "html": item.renderings[channel].html,
                "updated_at": item.notification.created_at,
            }
            for item in new
            if str(item.notification.id) in added
            for channel in item.notification.deliveries
        ]
        if delivery_rows:
            await conn.execute(deliveries.insert(), delivery_rows)
        return added

    async def _add_in_one_statement(self, new: Sequence[NewNotification]) -> None:
        """PostgreSQL: insert notifications without idempotency keys, their PENDING deliveries
        and the messages asking for them in one statement that commits by itself, one round
        trip, on the database's driver path (the edge runs it once per request when requests
        do not overlap). Without a key, nothing of `new` can conflict with what is stored:
        all of it is inserted, or the statement fails."""
        wanted = [
            (item, channel, item.renderings[channel])
            for item in new
            for channel in item.notification.deliveries
        ]
        added = [item.notification for item in new]
        parameters = {
            "ids": [str(x.id) for x in added],
            "recipients": [str(x.recipient) for x in added],
            "categories": [x.category for x in added],
            "templates": [x.content.template for x in added],
            "data": [json.dumps(dict(x.content.data)) for x in added],
            "subjects": [x.content.subject for x in added],
            "bodies": [x.content.body for x in added],
            "locales": [x.locale for x in added],
            "created": [x.created_at for x in added],
            "requested_by": [item.requested_by for item in new],
            "d_ids": [str(item.notification.id) for item, _, _ in wanted],
            "d_channels": [channel.value for _, channel, _ in wanted],
            "d_statuses": [DeliveryStatus.PENDING.value] * len(wanted),
            "d_subjects": [rendering.subject for _, _, rendering in wanted],
            "d_bodies": [rendering.body for _, _, rendering in wanted],
            "d_html": [rendering.html for _, _, rendering in wanted],
            "d_updated": [item.notification.created_at for item, _, _ in wanted],
        }
        await _ADD_AND_ENQUEUE.run(self._db, parameters, delivery_requests(_deliveries_of(new)))

    # --- reading ----------------------------------------------------------------------------

    async def _get(self, conn: AsyncConnection, notification_id: str) -> Notification | None:
        row = (
            await conn.execute(notifications.select().where(notifications.c.id == notification_id))
        ).first()
        if row is None:
            return None
        content = (
            Content(template=row.template, data=row.data or {})
            if row.template
            else Content(subject=row.subject, body=row.body)
        )
        delivery_rows = (
            await conn.execute(
                deliveries.select()
                .where(deliveries.c.notification_id == notification_id)
                .order_by(deliveries.c.channel)
            )
        ).all()
        attempt_rows = (
            await conn.execute(
                attempts.select()
                .where(attempts.c.notification_id == notification_id)
                .order_by(attempts.c.id)
            )
        ).all()
        by_channel: dict[Channel, Delivery] = {}
        for d in delivery_rows:
            delivery = delivery_of(d)
            delivery.attempts = [attempt_of(a) for a in attempt_rows if a.channel == d.channel]
            by_channel[delivery.channel] = delivery
        return Notification(
            id=uuid.UUID(row.id),
            recipient=uuid.UUID(row.recipient),
            category=row.category,
            content=content,
            locale=row.locale,
            created_at=aware(row.created_at),  # type: ignore[arg-type]
            deliveries=by_channel,
        )
