"""Notifications' storage on SQLAlchemy Core (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.notifications.adapters.tables import (
    attempts,
    deliveries,
    devices,
    inbox,
    notifications,
    preferences,
)
from townhall.notifications.domain import (
    Attempt,
    Channel,
    Content,
    Delivered,
    Delivery,
    DeliveryStatus,
    DeviceToken,
    Notification,
    Permanent,
    Preferences,
    PushPlatform,
    QuietHours,
    SkipReason,
    Transient,
)
from townhall.platform.db import Database
from townhall.platform.messaging import Envelope
from townhall.platform.outbox import ENQUEUE_CTE, enqueue_parameters


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite hands datetimes back naive; they are UTC
    return value


# PostgreSQL: a batch of new notifications without idempotency keys, their PENDING deliveries
# and the outbox messages asking for those, in one statement (one array per column, so the
# text and its prepared plan never change).
_ADD_AND_ENQUEUE = sa.text(
    f"WITH added AS (INSERT INTO {notifications.name} (id, recipient, category, template, data, "
    "subject, body, locale, created_at, requested_by) SELECT * FROM unnest("
    "CAST(:ids AS varchar[]), CAST(:recipients AS varchar[]), CAST(:categories AS varchar[]), "
    "CAST(:templates AS varchar[]), CAST(:data AS json[]), CAST(:subjects AS text[]), "
    "CAST(:bodies AS text[]), CAST(:locales AS varchar[]), CAST(:created AS timestamptz[]), "
    "CAST(:requested_by AS varchar[]))), "
    f"queued AS (INSERT INTO {deliveries.name} (notification_id, channel, status, subject, "
    "body, html, updated_at) SELECT * FROM unnest(CAST(:d_ids AS varchar[]), "
    "CAST(:d_channels AS varchar[]), CAST(:d_statuses AS varchar[]), "
    "CAST(:d_subjects AS text[]), CAST(:d_bodies AS text[]), CAST(:d_html AS text[]), "
    f"CAST(:d_updated AS timestamptz[]))), {ENQUEUE_CTE} SELECT 1"
)


@dataclass(frozen=True)
class Rendering:
    """What one channel will send, rendered when the request was accepted."""

    subject: str | None
    body: str
    html: str | None = None


@dataclass(frozen=True)
class StoredRequest:
    notification_id: str
    request_hash: str | None


@dataclass(frozen=True)
class InboxItem:
    id: str
    category: str
    subject: str | None
    body: str
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery as read, with what it needs to be sent: its rendering, the notification's
    recipient and category, the recipient's preferences, the current claim, and the version
    that a write of this reading must still find."""

    delivery: Delivery
    rendering: Rendering
    recipient: str
    category: str
    preferences: Preferences
    claimed_until: datetime | None
    version: int


@dataclass(frozen=True)
class NewNotification:
    """A notification to insert, with what each channel will send and who asked, how."""

    notification: Notification
    renderings: dict[Channel, Rendering]
    requested_by: str
    idempotency_key: str | None
    request_hash: str | None


# The workers' statements, built once: constructing a statement (and its cache key) costs
# more than running a cached one. Bound names carry a prefix so none is taken for a column.
_THIS_DELIVERY = sa.and_(
    deliveries.c.notification_id == sa.bindparam("w_notification_id"),
    deliveries.c.channel == sa.bindparam("w_channel"),
)
_TO_SEND = (
    sa.select(
        deliveries,
        notifications.c.recipient,
        notifications.c.category,
        preferences.c.opted_out.label("pref_opted_out"),
        preferences.c.quiet_start.label("pref_quiet_start"),
        preferences.c.quiet_end.label("pref_quiet_end"),
        preferences.c.time_zone.label("pref_time_zone"),
    )
    .join(notifications, notifications.c.id == deliveries.c.notification_id)
    .outerjoin(preferences, preferences.c.user_id == notifications.c.recipient)
)
_DELIVERIES_TO_SEND = _TO_SEND.where(
    deliveries.c.channel == sa.bindparam("w_channel"),
    deliveries.c.notification_id.in_(sa.bindparam("w_notification_ids", expanding=True)),
)
# PostgreSQL: the ids as one array, one statement text for any number of them (an expanding
# IN is a new statement, prepared again by the driver, for every number of ids).
_DELIVERIES_TO_SEND_ARRAY = _TO_SEND.where(
    deliveries.c.channel == sa.bindparam("w_channel"),
    deliveries.c.notification_id
    == sa.any_(sa.bindparam("w_notification_ids", type_=postgresql.ARRAY(sa.String))),
)
_STATE = ("status", "skip_reason", "held_until", "provider_id", "last_error", "updated_at")


def _write_delivery(*conditions: sa.ColumnElement[bool]) -> sa.Update:
    """UPDATE of a delivery's state, bumping its version, if it is still at `v_version`. It
    ends any claim: claims are written only by `_CLAIM_MANY`."""
    return (
        deliveries.update()
        .where(_THIS_DELIVERY, deliveries.c.version == sa.bindparam("v_version"), *conditions)
        .values(
            {
                **{
                    name: sa.bindparam(f"s_{name}", type_=deliveries.c[name].type)
                    for name in _STATE
                },
                "claimed_until": None,
                "version": deliveries.c.version + 1,
            }
        )
    )


_SAVE_DELIVERY = _write_delivery()
_FINISH_SENDING = _write_delivery(deliveries.c.status == DeliveryStatus.SENDING.value)
# Claims of many deliveries at once: those still at the version read become SENDING.
_CLAIM_MANY = (
    deliveries.update()
    .where(
        deliveries.c.channel == sa.bindparam("w_channel"),
        sa.tuple_(deliveries.c.notification_id, deliveries.c.version).in_(
            sa.bindparam("w_claims", expanding=True)
        ),
    )
    .values(
        status=DeliveryStatus.SENDING.value,
        held_until=None,
        claimed_until=sa.bindparam("s_claimed_until", type_=deliveries.c.claimed_until.type),
        updated_at=sa.bindparam("s_updated_at", type_=deliveries.c.updated_at.type),
        version=deliveries.c.version + 1,
    )
    .returning(deliveries.c.notification_id)
)
# PostgreSQL: the outcomes of many sends, and their attempts, in one statement. A row of
# `outcome` is written only where the delivery is still SENDING at the version its worker
# claimed, and only those get their attempt (joined on the version the UPDATE left); the
# answer is which (notification, claimed version) were written.
_FINISH_MANY = sa.text(
    """
    WITH outcome AS (
        SELECT * FROM unnest(
            CAST(:ids AS varchar[]), CAST(:versions AS integer[]), CAST(:statuses AS varchar[]),
            CAST(:provider_ids AS varchar[]), CAST(:last_errors AS text[]),
            CAST(:updated AS timestamptz[]), CAST(:at AS timestamptz[]),
            CAST(:providers AS varchar[]), CAST(:outcomes AS varchar[]),
            CAST(:answers AS text[]), CAST(:errors AS text[])
        ) AS o(notification_id, version, status, provider_id, last_error, updated_at, at,
               provider, outcome, answer, error)
    ), finished AS (
        UPDATE notifications_deliveries AS d
        SET status = o.status, provider_id = o.provider_id, last_error = o.last_error,
            claimed_until = NULL, updated_at = o.updated_at, version = d.version + 1
        FROM outcome AS o
        WHERE d.notification_id = o.notification_id AND d.channel = :channel
          AND d.version = o.version AND d.status = 'SENDING'
        RETURNING d.notification_id, d.version
    ), recorded AS (
        INSERT INTO notifications_attempts
            (notification_id, channel, at, provider, outcome, answer, error)
        SELECT o.notification_id, :channel, o.at, o.provider, o.outcome, o.answer, o.error
        FROM outcome AS o
        JOIN finished AS f ON f.notification_id = o.notification_id AND f.version = o.version + 1
    )
    SELECT notification_id, version - 1 AS claimed_version FROM finished
    """
)


class SqlNotificationStore:
    # --- requests ---------------------------------------------------------------------------

    async def add_many(self, conn: AsyncConnection, new: Sequence[NewNotification]) -> set[str]:
        """Insert notifications and their PENDING deliveries, two statements for all: the ids
        inserted. One whose (requester, idempotency key) is taken, by an earlier notification
        or an earlier one of `new`, is not inserted (nothing of it is written).

        The keys are claimed by `INSERT ... ON CONFLICT DO NOTHING`, not by catching a unique
        violation inside a savepoint per row."""
        if not new:
            return set()
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

    async def add_many_enqueueing(
        self,
        database: Database,
        new: Sequence[NewNotification],
        messages: Sequence[tuple[str, Envelope]],
    ) -> None:
        """PostgreSQL: insert notifications without idempotency keys, their PENDING deliveries
        and the outbox `messages` (topic, envelope) in one statement that commits by itself,
        one round trip, on the database's driver path (the edge runs it once per request when
        requests do not overlap). Without a key, nothing of `new` can conflict with what is
        stored: all of it is inserted, or the statement fails."""
        if any(item.idempotency_key is not None for item in new):
            raise ValueError("a notification with an idempotency key may be taken already")
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
            **enqueue_parameters(messages),
        }
        await database.run_on_driver(_ADD_AND_ENQUEUE, parameters)

    async def by_idempotency_key(
        self, conn: AsyncConnection, requested_by: str, key: str
    ) -> StoredRequest | None:
        query = sa.select(notifications.c.id, notifications.c.request_hash).where(
            notifications.c.requested_by == requested_by,
            notifications.c.idempotency_key == key,
        )
        row = (await conn.execute(query)).first()
        return StoredRequest(row.id, row.request_hash) if row else None

    async def get(self, conn: AsyncConnection, notification_id: str) -> Notification | None:
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
            delivery = _delivery(d)
            delivery.attempts = [_attempt(a) for a in attempt_rows if a.channel == d.channel]
            by_channel[delivery.channel] = delivery
        return Notification(
            id=uuid.UUID(row.id),
            recipient=uuid.UUID(row.recipient),
            category=row.category,
            content=content,
            locale=row.locale,
            created_at=_aware(row.created_at),  # type: ignore[arg-type]
            deliveries=by_channel,
        )

    async def recipient_of(self, conn: AsyncConnection, notification_id: str) -> str | None:
        query = sa.select(notifications.c.recipient).where(notifications.c.id == notification_id)
        return (await conn.execute(query)).scalar_one_or_none()

    # --- deliveries -------------------------------------------------------------------------

    async def deliveries_to_send(
        self, conn: AsyncConnection, notification_ids: Collection[str], channel: Channel
    ) -> dict[str, DeliveryRecord]:
        """The deliveries of many notifications on one channel, each with its notification's
        recipient and category and the recipient's preferences, in one query and without a
        lock (writes check the version instead); by notification id (one that has no such
        delivery is absent)."""
        if not notification_ids:
            return {}
        params = {"w_channel": channel.value, "w_notification_ids": list(notification_ids)}
        query = (
            _DELIVERIES_TO_SEND_ARRAY if conn.dialect.name == "postgresql" else _DELIVERIES_TO_SEND
        )
        rows = await conn.execute(query, params)
        return {row.notification_id: _record(row) for row in rows}

    async def claim_many(
        self,
        conn: AsyncConnection,
        channel: Channel,
        claims: Sequence[tuple[str, int]],
        now: datetime,
        claimed_until: datetime,
    ) -> set[str]:
        """Mark SENDING (claimed until `claimed_until`) each delivery of `(notification id,
        version read)` that is still at that version, in one statement: the ids claimed."""
        if not claims:
            return set()
        params = {
            "w_channel": channel.value,
            "w_claims": list(claims),
            "s_claimed_until": claimed_until,
            "s_updated_at": now,
        }
        return set((await conn.execute(_CLAIM_MANY, params)).scalars())

    async def finish_many(
        self,
        database: Database,
        channel: Channel,
        finished: Sequence[tuple[Delivery, int, Attempt, datetime]],
    ) -> list[bool]:
        """`finish_sending` for many deliveries of one channel, each `(delivery, version
        claimed, attempt, now)`: whether each was written. On PostgreSQL one statement that
        commits by itself, on the driver path; elsewhere one `finish_sending` each, in one
        transaction."""
        if not database.has_driver_path:
            async with database.transaction() as conn:
                return [
                    await self.finish_sending(conn, delivery, now, version, attempt)
                    for delivery, version, attempt, now in finished
                ]
        rows = [
            (delivery, version, _attempt_row(delivery, attempt), now)
            for delivery, version, attempt, now in finished
        ]
        params = {
            "channel": channel.value,
            "ids": [str(d.notification_id) for d, _, _, _ in rows],
            "versions": [version for _, version, _, _ in rows],
            "statuses": [d.status.value for d, _, _, _ in rows],
            "provider_ids": [d.provider_id for d, _, _, _ in rows],
            "last_errors": [d.last_error for d, _, _, _ in rows],
            "updated": [now for _, _, _, now in rows],
            "at": [a["at"] for _, _, a, _ in rows],
            "providers": [a["provider"] for _, _, a, _ in rows],
            "outcomes": [a["outcome"] for _, _, a, _ in rows],
            "answers": [a["answer"] for _, _, a, _ in rows],
            "errors": [a["error"] for _, _, a, _ in rows],
        }
        written = set(await database.run_on_driver(_FINISH_MANY, params))
        return [(str(d.notification_id), version) in written for d, version, _, _ in rows]

    async def save_delivery(
        self,
        conn: AsyncConnection,
        delivery: Delivery,
        now: datetime,
        *,
        read_version: int,
        new_attempts: Sequence[Attempt] = (),
    ) -> int | None:
        """Write the delivery if its version is still `read_version`: the new version, or
        None, writing nothing, if another writer came first. One statement unless there are
        attempts to add (then run it in a transaction)."""
        params = _delivery_params(delivery, now, read_version)
        if (await conn.execute(_SAVE_DELIVERY, params)).rowcount != 1:
            return None
        await self._add_attempts(conn, delivery, new_attempts)
        return read_version + 1

    async def finish_sending(
        self,
        conn: AsyncConnection,
        delivery: Delivery,
        now: datetime,
        claimed_version: int,
        attempt: Attempt,
    ) -> bool:
        """Record a send's outcome and its attempt if the delivery is still the version this
        worker claimed (so still SENDING, by this worker); False, writing nothing, if another
        worker took it over or finished it. Two statements: run it in a transaction."""
        params = _delivery_params(delivery, now, claimed_version)
        if (await conn.execute(_FINISH_SENDING, params)).rowcount != 1:
            return False
        await self._add_attempts(conn, delivery, [attempt])
        return True

    async def _add_attempts(
        self, conn: AsyncConnection, delivery: Delivery, new_attempts: Sequence[Attempt]
    ) -> None:
        if new_attempts:
            await conn.execute(
                attempts.insert(),
                [_attempt_row(delivery, attempt) for attempt in new_attempts],
            )

    async def due_held(
        self, conn: AsyncConnection, now: datetime, limit: int = 500
    ) -> list[tuple[str, Channel, str]]:
        """Held deliveries whose quiet hours are over, as (notification id, channel,
        recipient); locked on PostgreSQL, skipping locked ones."""
        query = (
            sa.select(deliveries.c.notification_id, deliveries.c.channel, notifications.c.recipient)
            .join(notifications, notifications.c.id == deliveries.c.notification_id)
            .where(
                deliveries.c.held_until.is_not(None),
                deliveries.c.held_until <= now,
                deliveries.c.status == DeliveryStatus.PENDING.value,
            )
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=deliveries, skip_locked=True)
        return [
            (r.notification_id, Channel(r.channel), r.recipient) for r in await conn.execute(query)
        ]

    async def release_held(
        self, conn: AsyncConnection, released: Sequence[tuple[str, Channel]]
    ) -> None:
        """End the hold of each (notification id, channel), in one statement."""
        if not released:
            return
        await conn.execute(
            deliveries.update()
            .where(
                sa.tuple_(deliveries.c.notification_id, deliveries.c.channel).in_(
                    [(notification_id, channel.value) for notification_id, channel in released]
                )
            )
            .values(held_until=None, version=deliveries.c.version + 1)
        )

    # --- preferences and devices ------------------------------------------------------------

    async def preferences(self, conn: AsyncConnection, user_id: str) -> Preferences:
        row = (
            await conn.execute(preferences.select().where(preferences.c.user_id == user_id))
        ).first()
        if row is None:
            return Preferences()
        return _preferences(row.opted_out, row.quiet_start, row.quiet_end, row.time_zone)

    async def save_preferences(
        self, conn: AsyncConnection, user_id: str, prefs: Preferences
    ) -> None:
        quiet = prefs.quiet_hours
        values: dict[str, Any] = {
            "opted_out": sorted([category, channel.value] for category, channel in prefs.opted_out),
            "quiet_start": quiet.start.strftime("%H:%M") if quiet else None,
            "quiet_end": quiet.end.strftime("%H:%M") if quiet else None,
            "time_zone": quiet.timezone if quiet else None,
        }
        updated = await conn.execute(
            preferences.update().where(preferences.c.user_id == user_id).values(**values)
        )
        if updated.rowcount == 0:
            await conn.execute(preferences.insert().values(user_id=user_id, **values))

    async def devices(self, conn: AsyncConnection, user_id: str) -> tuple[DeviceToken, ...]:
        return (await self.devices_of(conn, [user_id])).get(user_id, ())

    async def devices_of(
        self, conn: AsyncConnection, user_ids: Collection[str]
    ) -> dict[str, tuple[DeviceToken, ...]]:
        """The push devices of each of `user_ids` that has any, oldest first, in one query."""
        query = (
            sa.select(devices.c.user_id, devices.c.platform, devices.c.token)
            .where(devices.c.user_id.in_(list(user_ids)))
            .order_by(devices.c.created_at)
        )
        found: dict[str, list[DeviceToken]] = {}
        for row in await conn.execute(query):
            found.setdefault(row.user_id, []).append(
                DeviceToken(PushPlatform(row.platform), row.token)
            )
        return {user_id: tuple(tokens) for user_id, tokens in found.items()}

    async def add_device(
        self, conn: AsyncConnection, user_id: str, device: DeviceToken, now: datetime
    ) -> None:
        """Register a token; a token registered by someone else moves to this user."""
        await conn.execute(devices.delete().where(devices.c.token == device.token))
        await conn.execute(
            devices.insert().values(
                token=device.token, user_id=user_id, platform=device.platform.value, created_at=now
            )
        )

    async def remove_device(self, conn: AsyncConnection, token: str, user_id: str | None) -> bool:
        query = devices.delete().where(devices.c.token == token)
        if user_id is not None:
            query = query.where(devices.c.user_id == user_id)
        return bool((await conn.execute(query)).rowcount)

    # --- in-app inbox -----------------------------------------------------------------------

    async def add_to_inbox(
        self,
        conn: AsyncConnection,
        notification_id: str,
        user_id: str,
        category: str,
        rendering: Rendering,
        at: datetime,
    ) -> None:
        """The in-app delivery itself. Written in the transaction whose version-checked UPDATE
        marks the delivery SENT, so it is written once; the primary key (the notification's
        id) refuses a second row should anything else try."""
        await conn.execute(
            inbox.insert().values(
                id=notification_id,
                user_id=user_id,
                category=category,
                subject=rendering.subject,
                body=rendering.body,
                created_at=at,
            )
        )

    async def inbox_page(
        self, conn: AsyncConnection, user_id: str, before: str | None, limit: int
    ) -> list[InboxItem]:
        query = sa.select(inbox).where(inbox.c.user_id == user_id)
        if before is not None:
            query = query.where(inbox.c.id < before)
        query = query.order_by(inbox.c.id.desc()).limit(limit)
        return [
            InboxItem(
                r.id,
                r.category,
                r.subject,
                r.body,
                r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC),
                _aware(r.read_at),
            )
            for r in await conn.execute(query)
        ]

    async def unread_count(self, conn: AsyncConnection, user_id: str) -> int:
        query = sa.select(sa.func.count()).where(
            inbox.c.user_id == user_id, inbox.c.read_at.is_(None)
        )
        return int((await conn.execute(query)).scalar_one())

    async def mark_read(
        self, conn: AsyncConnection, user_id: str, item_id: str | None, at: datetime
    ) -> int:
        query = inbox.update().where(inbox.c.user_id == user_id, inbox.c.read_at.is_(None))
        if item_id is not None:
            query = query.where(inbox.c.id == item_id)
        return int((await conn.execute(query.values(read_at=at))).rowcount)

    async def inbox_item_exists(self, conn: AsyncConnection, user_id: str, item_id: str) -> bool:
        query = sa.select(inbox.c.id).where(inbox.c.user_id == user_id, inbox.c.id == item_id)
        return (await conn.execute(query)).first() is not None


def _preferences(
    opted_out: Any, quiet_start: str | None, quiet_end: str | None, time_zone: str | None
) -> Preferences:
    """Preferences from their row's columns (all None: the user never set any)."""
    quiet = None
    if quiet_start and quiet_end:
        quiet = QuietHours(
            time.fromisoformat(quiet_start), time.fromisoformat(quiet_end), time_zone or "UTC"
        )
    opted = frozenset((category, Channel(channel)) for category, channel in opted_out or ())
    return Preferences(opted_out=opted, quiet_hours=quiet)


def _record(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        _delivery(row),
        Rendering(row.subject, row.body, row.html),
        row.recipient,
        row.category,
        _preferences(
            row.pref_opted_out, row.pref_quiet_start, row.pref_quiet_end, row.pref_time_zone
        ),
        _aware(row.claimed_until),
        row.version,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        notification_id=uuid.UUID(row.notification_id),
        channel=Channel(row.channel),
        status=DeliveryStatus(row.status),
        skip_reason=SkipReason(row.skip_reason) if row.skip_reason else None,
        held_until=_aware(row.held_until),
        provider_id=row.provider_id,
        last_error=row.last_error,
    )


def _attempt(row: Any) -> Attempt:
    outcome: Delivered | Transient | Permanent
    if row.outcome == "delivered":
        outcome = Delivered(provider_id=row.answer)
    elif row.outcome == "transient":
        outcome = Transient(error=row.error or row.answer)
    else:
        outcome = Permanent(reason=row.error or row.answer)
    return Attempt(at=_aware(row.at), provider=row.provider, outcome=outcome)  # type: ignore[arg-type]


def _delivery_params(delivery: Delivery, now: datetime, version: int) -> dict[str, Any]:
    """Parameters of `_write_delivery`'s statements: which delivery, at which version, and
    its new state."""
    return {
        "w_notification_id": str(delivery.notification_id),
        "w_channel": delivery.channel.value,
        "v_version": version,
        "s_status": delivery.status.value,
        "s_skip_reason": delivery.skip_reason.value if delivery.skip_reason else None,
        "s_held_until": delivery.held_until,
        "s_provider_id": delivery.provider_id,
        "s_last_error": delivery.last_error,
        "s_updated_at": now,
    }


def _attempt_row(delivery: Delivery, attempt: Attempt) -> dict[str, Any]:
    kind = {Delivered: "delivered", Transient: "transient", Permanent: "permanent"}[
        type(attempt.outcome)
    ]
    return {
        "notification_id": str(delivery.notification_id),
        "channel": delivery.channel.value,
        "at": attempt.at,
        "provider": attempt.provider,
        "outcome": kind,
        "answer": attempt.answer,
        "error": attempt.error,
    }
