"""`SqlDeliveries`: the channel deliveries on SQLite and PostgreSQL, written only at the version
they were read at.

The workers' reads, claims and outcomes go in batches, per channel: a call waits at most for
the batch under way, and every call made meanwhile shares the next one (one statement for
all, instead of one each). On PostgreSQL over asyncpg the outcomes of a batch and their
attempts are one statement on the driver path; elsewhere one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.notifications.adapters.sql.rows import (
    attempt_row,
    aware,
    delivery_of,
    preferences_of,
)
from townhall.notifications.adapters.tables import (
    attempts,
    deliveries,
    inbox,
    notifications,
    preferences,
)
from townhall.notifications.domain import Attempt, Channel, Delivery, DeliveryStatus
from townhall.notifications.messages import delivery_requests
from townhall.notifications.ports import DeliveryToSend, Rendering
from townhall.platform.batching import Batcher, Outcome
from townhall.platform.db import Database
from townhall.platform.outbox import enqueue_all

BATCH_SIZE = 100  # at most this many deliveries in one batched statement
RELEASE_BATCH = 500  # at most this many held deliveries released per call

T = TypeVar("T")
R = TypeVar("R")

# The statements, built once: constructing a statement (and its cache key) costs more than
# running a cached one. Bound names carry a prefix so none is taken for a column.
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
    f"""
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
        UPDATE {deliveries.name} AS d
        SET status = o.status, provider_id = o.provider_id, last_error = o.last_error,
            claimed_until = NULL, updated_at = o.updated_at, version = d.version + 1
        FROM outcome AS o
        WHERE d.notification_id = o.notification_id AND d.channel = :channel
          AND d.version = o.version AND d.status = 'SENDING'
        RETURNING d.notification_id, d.version
    ), recorded AS (
        INSERT INTO {attempts.name}
            (notification_id, channel, at, provider, outcome, answer, error)
        SELECT o.notification_id, :channel, o.at, o.provider, o.outcome, o.answer, o.error
        FROM outcome AS o
        JOIN finished AS f ON f.notification_id = o.notification_id AND f.version = o.version + 1
    )
    SELECT notification_id, version - 1 AS claimed_version FROM finished
    """
)

Claim = tuple[str, int, datetime, timedelta]  # notification id, version read, now, hold
Finish = tuple[Delivery, int, Attempt, datetime]  # delivery, version claimed, attempt, now


class _PerChannel:
    """One `Batcher` per channel: a batch's statement is about one channel's deliveries."""

    def __init__(
        self, run: Callable[[Channel, Sequence[Any]], Awaitable[Sequence[Outcome[Any]]]]
    ) -> None:
        self._run = run
        self._batchers: dict[Channel, Batcher[Any, Any]] = {}

    async def submit(self, channel: Channel, item: Any) -> Any:
        batcher = self._batchers.get(channel)
        if batcher is None:

            async def run(items: Sequence[Any]) -> Sequence[Outcome[Any]]:
                return await self._run(channel, items)

            batcher = self._batchers[channel] = Batcher(run, max_size=BATCH_SIZE)
        return await batcher.submit(item)


class SqlDeliveries:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._reads = _PerChannel(self._read_batch)
        self._claims = _PerChannel(self._claim_batch)
        # Outcomes are not held back to make bigger batches: the time between a provider's
        # acceptance and the commit of SENT is the window in which a crash makes a resend.
        self._finishes = _PerChannel(self._finish_batch)

    async def recipient_of(self, notification_id: str) -> str | None:
        query = sa.select(notifications.c.recipient).where(notifications.c.id == notification_id)
        async with self._db.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def to_send(self, channel: Channel, notification_id: str) -> DeliveryToSend | None:
        found: DeliveryToSend | None = await self._reads.submit(channel, notification_id)
        return found

    async def claim(
        self, channel: Channel, notification_id: str, version: int, now: datetime, hold: timedelta
    ) -> bool:
        won: bool = await self._claims.submit(channel, (notification_id, version, now, hold))
        return won

    async def finish(
        self, delivery: Delivery, claimed_version: int, attempt: Attempt, now: datetime
    ) -> bool:
        item: Finish = (delivery, claimed_version, attempt, now)
        written: bool = await self._finishes.submit(delivery.channel, item)
        return written

    async def save(self, delivery: Delivery, now: datetime, read_version: int) -> bool:
        async with self._db.autocommit() as conn:  # skipped or held: rare, one by one
            return await self._save(conn, delivery, now, read_version)

    async def put_in_inbox(self, found: DeliveryToSend, now: datetime) -> bool:
        """The inbox row's primary key (the notification's id) refuses a second row should
        anything else try."""
        delivery = found.delivery
        async with self._db.transaction() as conn:
            if not await self._save(conn, delivery, now, found.version, delivery.attempts[-1:]):
                return False
            await conn.execute(
                inbox.insert().values(
                    id=str(delivery.notification_id),
                    user_id=found.recipient,
                    category=found.category,
                    subject=found.rendering.subject,
                    body=found.rendering.body,
                    created_at=now,
                )
            )
        return True

    async def release_held(self, now: datetime) -> int:
        """Locked on PostgreSQL, skipping rows another releaser holds."""
        query = (
            sa.select(deliveries.c.notification_id, deliveries.c.channel, notifications.c.recipient)
            .join(notifications, notifications.c.id == deliveries.c.notification_id)
            .where(
                deliveries.c.held_until.is_not(None),
                deliveries.c.held_until <= now,
                deliveries.c.status == DeliveryStatus.PENDING.value,
            )
            .limit(RELEASE_BATCH)
        )
        async with self._db.transaction() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=deliveries, skip_locked=True)
            due = [
                (row.notification_id, Channel(row.channel), row.recipient)
                for row in await conn.execute(query)
            ]
            if due:
                await conn.execute(
                    deliveries.update()
                    .where(
                        sa.tuple_(deliveries.c.notification_id, deliveries.c.channel).in_(
                            [(nid, channel.value) for nid, channel, _ in due]
                        )
                    )
                    .values(held_until=None, version=deliveries.c.version + 1)
                )
                await enqueue_all(conn, delivery_requests(due))
        return len(due)

    # --- the batches ------------------------------------------------------------------------

    async def _read_batch(
        self, channel: Channel, notification_ids: Sequence[str]
    ) -> list[DeliveryToSend | None]:
        """The deliveries of many notifications on one channel, each with its notification's
        recipient and category and the recipient's preferences, in one query and without a
        lock (writes check the version instead)."""
        params = {"w_channel": channel.value, "w_notification_ids": list(set(notification_ids))}
        async with self._db.connect() as conn:
            query = (
                _DELIVERIES_TO_SEND_ARRAY
                if conn.dialect.name == "postgresql"
                else _DELIVERIES_TO_SEND
            )
            found = {
                row.notification_id: _to_send(row) for row in await conn.execute(query, params)
            }
        return [found.get(notification_id) for notification_id in notification_ids]

    async def _claim_batch(self, channel: Channel, items: Sequence[Claim]) -> list[bool]:
        """Claim many deliveries for sending, each at the version its worker read, in one
        statement: whether each claim was written. A delivery asked for twice in one batch is
        claimed by the first ask only. The batch's claims end together, at the latest of
        their `now + hold`."""
        now = max(item[2] for item in items)
        claimed_until = max(item[2] + item[3] for item in items)
        params = {
            "w_channel": channel.value,
            "w_claims": list(dict.fromkeys((nid, version) for nid, version, _, _ in items)),
            "s_claimed_until": claimed_until,
            "s_updated_at": now,
        }
        async with self._db.autocommit() as conn:
            claimed = set((await conn.execute(_CLAIM_MANY, params)).scalars())
        won: list[bool] = []
        for notification_id, _, _, _ in items:
            won.append(notification_id in claimed)
            claimed.discard(notification_id)
        return won

    async def _finish_batch(self, channel: Channel, finished: Sequence[Finish]) -> list[bool]:
        """The outcomes of many sends on one channel: whether each was written."""
        if not self._db.has_driver_path:
            async with self._db.transaction() as conn:
                return [
                    await self._finish_one(conn, delivery, now, version, attempt)
                    for delivery, version, attempt, now in finished
                ]
        rows = [
            (delivery, version, attempt_row(delivery, attempt), now)
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
        written = set(await self._db.run_on_driver(_FINISH_MANY, params))
        return [(str(d.notification_id), version) in written for d, version, _, _ in rows]

    # --- single writes ----------------------------------------------------------------------

    async def _save(
        self,
        conn: AsyncConnection,
        delivery: Delivery,
        now: datetime,
        read_version: int,
        new_attempts: Sequence[Attempt] = (),
    ) -> bool:
        """Write the delivery if its version is still `read_version` (and its new attempts):
        False, writing nothing, if another writer came first."""
        params = _state(delivery, now, read_version)
        if (await conn.execute(_SAVE_DELIVERY, params)).rowcount != 1:
            return False
        await _add_attempts(conn, delivery, new_attempts)
        return True

    async def _finish_one(
        self,
        conn: AsyncConnection,
        delivery: Delivery,
        now: datetime,
        claimed_version: int,
        attempt: Attempt,
    ) -> bool:
        """Record a send's outcome and its attempt if the delivery is still the version this
        worker claimed (so still SENDING, by this worker). Two statements: in a transaction."""
        params = _state(delivery, now, claimed_version)
        if (await conn.execute(_FINISH_SENDING, params)).rowcount != 1:
            return False
        await _add_attempts(conn, delivery, [attempt])
        return True


async def _add_attempts(
    conn: AsyncConnection, delivery: Delivery, new_attempts: Collection[Attempt]
) -> None:
    if new_attempts:
        await conn.execute(
            attempts.insert(), [attempt_row(delivery, attempt) for attempt in new_attempts]
        )


def _to_send(row: Any) -> DeliveryToSend:
    return DeliveryToSend(
        delivery_of(row),
        Rendering(row.subject, row.body, row.html),
        row.recipient,
        row.category,
        preferences_of(
            row.pref_opted_out, row.pref_quiet_start, row.pref_quiet_end, row.pref_time_zone
        ),
        aware(row.claimed_until),
        row.version,
    )


def _state(delivery: Delivery, now: datetime, version: int) -> dict[str, Any]:
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
