"""Notifications' use cases: accept a request (202), deliver it per channel, hold and release
deliveries for quiet hours, and the user's own preferences, devices and inbox.

Accepting writes the notification, its PENDING deliveries and one outbox envelope per channel
in one transaction; the relay puts them on the bus, where one consumer group per channel
(`notifications.email`, ...) delivers. Nothing accepted is lost, and a delivery recorded SENT
is never sent again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.notifications.adapters.sql import (
    DeliveryRecord,
    InboxItem,
    NewNotification,
    Rendering,
    SqlNotificationStore,
)
from townhall.notifications.domain import (
    Attempt,
    Channel,
    ContactPoints,
    Content,
    Delivered,
    Delivery,
    DeliveryStatus,
    DeviceToken,
    Hold,
    Notification,
    NotificationError,
    Permanent,
    Preferences,
    PushPlatform,
    QuietHours,
    SendOutcome,
    Skip,
    Transient,
    check_template_data,
    compose_messages,
    decide,
    parse_channels,
)
from townhall.notifications.providers import Sender
from townhall.notifications.templates import TemplateRenderer
from townhall.platform import errors
from townhall.platform.batching import Batcher
from townhall.platform.clock import Clock
from townhall.platform.db import Database
from townhall.platform.messaging import Envelope, Retry
from townhall.platform.observability import get_logger
from townhall.platform.outbox import enqueue_all
from townhall.platform.slots import Slots
from townhall.platform.ttl_cache import TtlCache

log = get_logger("townhall.notifications")

DELIVERY_REQUESTED = "notifications.DeliveryRequested"
# A worker whose write finds the delivery changed since it read it reads it again, at most
# this many times in a row, then leaves the message to the bus's retry.
CLAIM_READS = 3
CLAIM_RETRY_SECONDS = 1.0
BATCH_SIZE = 100  # at most this many notifications or deliveries per batched statement
IN_FLIGHT = 100  # at most this many deliveries under way in one worker
# Accepting a request needs of its recipient only that they exist and their locale; the
# worker reads where to reach them when it sends. Users are never deleted, so a cached
# recipient can be stale only in its locale, for at most this long after a change.
KNOWN_RECIPIENTS_TTL = timedelta(seconds=30)
KNOWN_RECIPIENTS_MAX = 10_000


def topic_for(channel: Channel) -> str:
    """Each channel has its own topic and consumer group of the same name."""
    return f"notifications.{channel.value}"


class Recipient(Protocol):
    """What delivery needs to know of a user (read-only: identity's `UserContact` is frozen)."""

    @property
    def id(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def locale(self) -> str: ...


class Directory(Protocol):
    """Who a recipient is and how to reach them (identity's facade)."""

    async def contact(self, user_id: str) -> Recipient: ...

    async def contacts(self, user_ids: Collection[str]) -> Mapping[str, Recipient]:
        """Many at once, by id; an unknown id is absent."""
        ...


class UnknownRecipient(errors.Invalid):
    code = "unknown-recipient"
    title = "Unknown recipient"


class IdempotencyKeyReused(errors.Invalid):
    code = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"


class NotificationNotFound(errors.NotFound):
    code = "notification-not-found"
    title = "Notification not found"


class DeliveryFailed(Exception):
    """Raised on the last attempt so the bus moves the message to the dead-letter store."""


@dataclass(frozen=True)
class NotificationRequest:
    recipient: str
    channels: Sequence[str]
    category: str = "general"
    template: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None
    locale: str | None = None

    def fingerprint(self) -> str:
        canonical = json.dumps(
            {
                "recipient": self.recipient,
                "channels": list(self.channels),
                "category": self.category,
                "template": self.template,
                "data": self.data,
                "subject": self.subject,
                "body": self.body,
                "locale": self.locale,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Accepted:
    id: str
    status: DeliveryStatus
    created: bool  # False when an idempotent retry returned the first answer


def delivery_envelope(
    notification_id: str, channel: Channel, recipient: str | None = None
) -> Envelope:
    """What a channel's worker is asked to deliver: one notification's delivery. The recipient
    rides along (when known) so the worker can look the contact points up without reading the
    notification first."""
    payload = {"notification_id": notification_id, "channel": channel.value}
    if recipient is not None:
        payload["recipient"] = recipient
    return Envelope(type=DELIVERY_REQUESTED, key=notification_id, payload=payload)


def deliveries_envelope(channel: Channel, wanted: Sequence[tuple[str, str]]) -> Envelope:
    """One message asking a channel's worker for the deliveries of many notifications, each
    `(notification id, recipient)`: what one group commit accepted, so the relay, the broker
    and the worker handle one message for them all instead of one each."""
    if len(wanted) == 1:
        return delivery_envelope(wanted[0][0], channel, wanted[0][1])
    payload = {"channel": channel.value, "deliveries": [list(pair) for pair in wanted]}
    return Envelope(type=DELIVERY_REQUESTED, key=wanted[0][0], payload=payload)


def deliveries_asked(payload: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The `(notification id, recipient or None)` a `DeliveryRequested` payload asks for."""
    if "deliveries" in payload:
        return [(str(nid), str(recipient)) for nid, recipient in payload["deliveries"]]
    recipient = payload.get("recipient")
    return [(str(payload["notification_id"]), None if recipient is None else str(recipient))]


def delivery_messages(wanted: Iterable[tuple[str, Channel, str]]) -> list[tuple[str, Envelope]]:
    """The (topic, envelope) asking the channels' workers to deliver each (notification id,
    channel, recipient): one message per channel for up to `BATCH_SIZE` of them."""
    by_channel: dict[Channel, list[tuple[str, str]]] = {}
    for notification_id, channel, recipient in wanted:
        by_channel.setdefault(channel, []).append((notification_id, recipient))
    return [
        (topic_for(channel), deliveries_envelope(channel, pairs[start : start + BATCH_SIZE]))
        for channel, pairs in by_channel.items()
        for start in range(0, len(pairs), BATCH_SIZE)
    ]


async def enqueue_deliveries(
    conn: AsyncConnection, wanted: Iterable[tuple[str, Channel, str]]
) -> None:
    """Ask for the deliveries `wanted` (see `delivery_messages`) through the outbox, in the
    transaction of `conn`."""
    await enqueue_all(conn, delivery_messages(wanted))


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


class NotificationService:
    def __init__(
        self,
        database: Database,
        store: SqlNotificationStore,
        renderer: TemplateRenderer,
        directory: Directory,
        clock: Clock,
    ) -> None:
        self._db = database
        self._store = store
        self._renderer = renderer
        self._directory = directory
        self._clock = clock
        # Concurrent requests share their recipients' lookup and their transaction.
        self._recipients = Batcher(self._recipient_batch, max_size=BATCH_SIZE)
        self._known: TtlCache[str, Recipient] = TtlCache(
            clock, ttl=KNOWN_RECIPIENTS_TTL, max_entries=KNOWN_RECIPIENTS_MAX
        )
        self._adds = Batcher(self._add_batch, max_size=BATCH_SIZE)

    async def request(
        self,
        request: NotificationRequest,
        *,
        requested_by: str,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Validate, render and record; delivery happens later, through the bus."""
        fingerprint = request.fingerprint() if idempotency_key else None
        if idempotency_key:
            earlier = await self._earlier(requested_by, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier
        notification, renderings = await self._prepare(request)
        added = await self._adds.submit(
            NewNotification(notification, renderings, requested_by, idempotency_key, fingerprint)
        )
        if not added:
            # An identical request raced us and won: answer as it was answered.
            assert idempotency_key is not None
            earlier = await self._earlier(requested_by, idempotency_key, fingerprint)
            if earlier is None:
                raise RuntimeError(
                    f"the Idempotency-Key {idempotency_key!r} is taken, but its notification"
                    " could not be read back"
                )
            return earlier
        return Accepted(str(notification.id), notification.status, created=True)

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
            await self._store.add_many_enqueueing(
                self._db, items, delivery_messages(_deliveries_of(items))
            )
            return [True] * len(items)
        async with self._db.transaction() as conn:
            added = await self._store.add_many(conn, items)
            await enqueue_deliveries(conn, _deliveries_of(items, added))
        return [str(item.notification.id) in added for item in items]

    async def _recipient_batch(self, user_ids: Sequence[str]) -> list[Recipient | None]:
        found = await self._directory.contacts(set(user_ids))
        return [found.get(user_id) for user_id in user_ids]

    async def _earlier(
        self, requested_by: str, key: str, fingerprint: str | None
    ) -> Accepted | None:
        async with self._db.connect() as conn:
            stored = await self._store.by_idempotency_key(conn, requested_by, key)
            if stored is None:
                return None
            if stored.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    f"the Idempotency-Key {key!r} was used for a different request",
                    field="Idempotency-Key",
                )
            notification = await self._store.get(conn, stored.notification_id)
        assert notification is not None
        return Accepted(stored.notification_id, notification.status, created=False)

    async def _prepare(
        self, request: NotificationRequest
    ) -> tuple[Notification, dict[Channel, Rendering]]:
        try:
            channels = parse_channels(request.channels)
            content = Content(
                template=request.template,
                data=dict(check_template_data(request.data)),
                subject=request.subject,
                body=request.body,
            )
            recipient_id = uuid.UUID(request.recipient)
        except ValueError:
            raise UnknownRecipient(
                f"{request.recipient!r} is not a user id", field="recipient"
            ) from None
        recipient = self._known.get(request.recipient)
        if recipient is None:
            recipient = await self._recipients.submit(request.recipient)
            if recipient is None:
                raise UnknownRecipient(f"no user {request.recipient}", field="recipient")
            self._known.put(request.recipient, recipient)
        locale = request.locale or recipient.locale
        renderings: dict[Channel, Rendering] = {}
        for channel in channels:
            if content.template is None:
                renderings[channel] = Rendering(content.subject, content.body or "")
                continue
            rendered = self._renderer.render(content.template, channel, locale, content.data)
            renderings[channel] = Rendering(rendered.subject, rendered.body, rendered.html)
        notification = Notification.request(
            recipient=recipient_id,
            channels=channels,
            category=request.category,
            content=content,
            clock=self._clock,
            locale=locale,
        )
        return notification, renderings

    async def time_zone_of(self, user_id: str) -> str:
        return (await self._directory.contact(user_id)).time_zone

    async def get(self, notification_id: str) -> Notification:
        async with self._db.connect() as conn:
            notification = await self._store.get(conn, notification_id)
        if notification is None:
            raise NotificationNotFound(f"no notification {notification_id}")
        return notification


class DeliveryWorker:
    """Handles one channel's `DeliveryRequested` envelopes (a stateless consumer)."""

    def __init__(
        self,
        channel: Channel,
        database: Database,
        store: SqlNotificationStore,
        directory: Directory,
        sender: Sender[Any] | None,
        clock: Clock,
        *,
        max_attempts: int,
        claim_seconds: float = 60.0,
    ) -> None:
        if sender is None and channel is not Channel.IN_APP:
            raise ValueError(f"the {channel.value} channel needs a sender")
        self.channel = channel
        self._db = database
        self._store = store
        self._directory = directory
        self._sender = sender
        self._clock = clock
        self._max_attempts = max_attempts
        self._claim_time = timedelta(seconds=claim_seconds)
        # The workers' reads and writes of deliveries go in batches: a handler's call waits
        # at most for the batch under way, and every handler running meanwhile shares the
        # next one (one statement for all, instead of one each).
        self._reads = Batcher(self._read_batch, max_size=BATCH_SIZE)
        self._claims = Batcher(self._claim_batch, max_size=BATCH_SIZE)
        # Outcomes are not held back to make bigger batches: the time between a provider's
        # acceptance and the commit of SENT is the window in which a crash makes a resend.
        self._finishes = Batcher(self._finish_batch, max_size=BATCH_SIZE)
        # Deliveries under way at once, across messages: a message may ask for many, and a
        # delivery is claimed only once it has a slot, so a claim is sent well before it ends.
        # A message's deliveries take their slots together, so they are read and claimed
        # together too (taken one by one as others end, they went a few per statement).
        self._in_flight = Slots(IN_FLIGHT)

    async def handle(self, envelope: Envelope) -> None:
        """Deliver what the message asks for: one delivery, or many (then concurrently, each
        on its own). If some fail, the message is retried (or dead-lettered on its last
        attempt) as a whole; on the retry, what was sent or skipped meanwhile is not sent
        again, nor is a delivery that failed for good unless an operator replays the message.
        """
        wanted = deliveries_asked(envelope.payload)
        outcomes: list[BaseException | None] = []
        for start in range(0, len(wanted), IN_FLIGHT):
            outcomes += await self._deliver_together(envelope, wanted[start : start + IN_FLIGHT])
        failures: list[Exception] = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome  # cancelled: we are stopping
        if failures:
            raise _one_failure(failures, len(wanted))

    async def _deliver_together(
        self, envelope: Envelope, wanted: Sequence[tuple[str, str | None]]
    ) -> list[BaseException | None]:
        """Deliver `wanted` concurrently once there are slots for all of them, so that their
        reads and claims go as one batch each; each gives its slot back when it ends."""
        await self._in_flight.take(len(wanted))
        given = 0

        async def deliver(notification_id: str, recipient_id: str | None) -> None:
            nonlocal given
            try:
                await self._deliver_now(envelope, notification_id, recipient_id)
            finally:
                given += 1
                self._in_flight.give()

        try:
            return await asyncio.gather(
                *(deliver(nid, recipient) for nid, recipient in wanted), return_exceptions=True
            )
        finally:
            self._in_flight.give(len(wanted) - given)  # those cancelled before they started

    async def _deliver_now(
        self, envelope: Envelope, notification_id: str, recipient_id: str | None
    ) -> None:
        # Who to reach is looked up first, on its own connection: a handler never holds one
        # connection while it waits for another (prefetch x 2 would drain the pool).
        if recipient_id is None:  # a message from before the recipient rode along
            async with self._db.connect() as conn:
                recipient_id = await self._store.recipient_of(conn, notification_id)
        if recipient_id is None:
            log.warning("notification not found", notification_id=notification_id)
            return
        claim = await self._claim(notification_id, recipient_id, resend_failed=envelope.replayed)
        if claim is None:
            return  # nothing to send: done already, skipped, held or put in the inbox
        delivery, version, contacts, rendering = claim
        outcome, dead_tokens = await self._send(delivery.notification_id, contacts, rendering)
        final = isinstance(outcome, Permanent) or envelope.attempt >= self._max_attempts
        done = self._clock.now()
        assert self._sender is not None
        # `delivery` is as this worker claimed it (SENDING, no attempts loaded); the outcome
        # is written only if the delivery is still at the version of that claim.
        delivery.record(done, self._sender.name, outcome, final=final)
        if not await self._finishes.submit((delivery, version, delivery.attempts[-1], done)):
            return  # another worker took it over (this claim ran out) or finished it
        for token in dead_tokens:
            async with self._db.autocommit() as conn:
                await self._store.remove_device(conn, token, None)
        if isinstance(outcome, Transient):
            if final:
                raise DeliveryFailed(f"{self.channel.value}: {outcome.error}")
            if outcome.retry_after is not None:
                raise Retry(outcome.retry_after, outcome.error)
            raise TransientFailure(outcome.error)

    async def _claim(
        self, notification_id: str, recipient_id: str, *, resend_failed: bool
    ) -> tuple[Delivery, int, ContactPoints, Rendering] | None:
        """Decide what to do with the delivery and write that decision: skip, hold, put in
        the inbox, or claim it for sending (SENDING until now + the claim time). Returns the
        claim (the delivery, its version, where to send, what) when there is something to
        send.

        No lock is held: the delivery is read, the decision made, and written only if the
        delivery's version is still the one read. A writer that came in between (a second
        copy of the message, the releaser of held deliveries) makes this read again.

        A FAILED delivery is sent again only if `resend_failed` (a replayed message): the
        retry of a message for many deliveries must not resend one that failed for good."""
        for _ in range(CLAIM_READS):
            found, recipient, devices = await self._reads.submit((notification_id, recipient_id))
            now = self._clock.now()
            if found is None:
                log.warning("delivery not found", notification_id=notification_id)
                return None
            if not found.delivery.should_send:
                return None  # SENT or SKIPPED already: a redelivered message sends nothing
            if found.delivery.status is DeliveryStatus.FAILED and not resend_failed:
                return None  # failed for good by an earlier attempt; a replay sends it again
            if recipient is None:
                raise UnknownRecipient(f"no user {recipient_id}", field="recipient")
            delivery, claimed = found.delivery, found.claimed_until
            if delivery.status is DeliveryStatus.SENDING and claimed and claimed > now:
                # Another worker is sending it right now; look again once its claim ends.
                raise Retry((claimed - now).total_seconds(), "delivery claimed by a worker")
            if found.recipient != recipient_id:
                raise ValueError(f"the message names another recipient than {notification_id}")
            contacts = ContactPoints(recipient.email, recipient.phone, devices)
            decision = decide(self.channel, found.category, found.preferences, contacts, now)
            if isinstance(decision, Skip):
                delivery.skip(decision.reason)
            elif isinstance(decision, Hold) and delivery.status is DeliveryStatus.PENDING:
                delivery.hold(decision.until)  # the releaser puts it back on the bus then
            else:
                delivery.start_sending()
            if self.channel is Channel.IN_APP and delivery.status is DeliveryStatus.SENDING:
                if await self._put_in_inbox(found, recipient_id, now):
                    return None
                continue
            if delivery.status is DeliveryStatus.SENDING:
                if await self._claims.submit((notification_id, found.version)):
                    return delivery, found.version + 1, contacts, found.rendering
                continue  # changed since it was read: read it again
            async with self._db.autocommit() as conn:  # skipped or held: rare, one by one
                version = await self._store.save_delivery(
                    conn, delivery, now, read_version=found.version
                )
            if version is not None:
                return None
            # changed since it was read: read it again
        raise Retry(CLAIM_RETRY_SECONDS, "the delivery kept changing while it was claimed")

    async def _read_batch(
        self, items: Sequence[tuple[str, str]]
    ) -> list[tuple[DeliveryRecord | None, Recipient | None, tuple[DeviceToken, ...]]]:
        """Deliveries of many `(notification id, recipient id)`, their recipients' contacts
        (and devices, for push): two queries for the lot, three for push."""
        recipient_ids = {recipient_id for _, recipient_id in items}
        contacts = await self._directory.contacts(recipient_ids)
        devices: dict[str, tuple[DeviceToken, ...]] = {}
        async with self._db.connect() as conn:
            found = await self._store.deliveries_to_send(
                conn, {notification_id for notification_id, _ in items}, self.channel
            )
            if self.channel is Channel.PUSH:
                devices = await self._store.devices_of(conn, recipient_ids)
        return [
            (found.get(notification_id), contacts.get(recipient_id), devices.get(recipient_id, ()))
            for notification_id, recipient_id in items
        ]

    async def _claim_batch(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        """Claim many deliveries for sending, each at the version its worker read: whether
        each claim was written. A delivery asked for twice in one batch is claimed by the
        first ask only."""
        now = self._clock.now()
        async with self._db.autocommit() as conn:
            claimed = await self._store.claim_many(
                conn, self.channel, list(dict.fromkeys(items)), now, now + self._claim_time
            )
        won: list[bool] = []
        for notification_id, _ in items:
            won.append(notification_id in claimed)
            claimed.discard(notification_id)
        return won

    async def _finish_batch(
        self, items: Sequence[tuple[Delivery, int, Attempt, datetime]]
    ) -> list[bool]:
        return await self._store.finish_many(self._db, self.channel, items)

    async def _put_in_inbox(self, found: DeliveryRecord, recipient_id: str, now: datetime) -> bool:
        """The inbox row is the in-app delivery: written with SENT, exactly once. False if the
        delivery changed since it was read (nothing written)."""
        delivery, notification_id = found.delivery, str(found.delivery.notification_id)
        delivery.record(now, "inbox", Delivered(notification_id), final=True)
        async with self._db.transaction() as conn:
            version = await self._store.save_delivery(
                conn, delivery, now, read_version=found.version, new_attempts=delivery.attempts[-1:]
            )
            if version is None:
                return False
            await self._store.add_to_inbox(
                conn, notification_id, recipient_id, found.category, found.rendering, now
            )
        return True

    async def _send(
        self, notification_id: uuid.UUID, contacts: ContactPoints, rendering: Rendering
    ) -> tuple[SendOutcome, list[str]]:
        assert self._sender is not None
        messages = compose_messages(
            notification_id,
            self.channel,
            contacts,
            rendering.subject,
            rendering.body,
            rendering.html,
        )
        outcomes = [await self._sender.send(message) for message in messages]
        dead = [
            message.device.token  # type: ignore[union-attr]
            for message, outcome in zip(messages, outcomes, strict=True)
            if isinstance(outcome, Permanent) and outcome.token_dead
        ]
        for kind in (Delivered, Transient):
            for outcome in outcomes:
                if isinstance(outcome, kind):
                    return outcome, dead
        return (outcomes[0] if outcomes else Permanent("nothing to send")), dead


class TransientFailure(Exception):
    """A transient provider answer: the bus retries with its backoff and jitter."""


def _one_failure(failures: Sequence[Exception], asked: int) -> Exception:
    """What a message for `asked` deliveries raises when `failures` of them failed: an error
    that is not a provider's transient answer if there is one (the bus backs off, or
    dead-letters it), else a transient failure (backoff), else the longest `Retry`. A
    message for one delivery raises that delivery's error as it is."""
    if asked == 1:
        return failures[0]
    summary = f"{len(failures)} of {asked} deliveries failed, first: {failures[0]}"
    for failure in failures:
        if not isinstance(failure, Retry | TransientFailure):
            return failure
    delays = [failure.after for failure in failures if isinstance(failure, Retry)]
    if len(delays) < len(failures):
        return TransientFailure(summary)
    return Retry(max(delays), summary)


class HeldReleaser:
    """Puts deliveries held for quiet hours back on the bus once their hold ends."""

    def __init__(self, database: Database, store: SqlNotificationStore, clock: Clock) -> None:
        self._db = database
        self._store = store
        self._clock = clock

    async def release_due(self) -> int:
        async with self._db.transaction() as conn:
            due = await self._store.due_held(conn, self._clock.now())
            await self._store.release_held(conn, [(nid, channel) for nid, channel, _ in due])
            await enqueue_deliveries(conn, due)
        return len(due)


class UserSettings:
    """A user's preferences, devices and in-app inbox."""

    def __init__(self, database: Database, store: SqlNotificationStore, clock: Clock) -> None:
        self._db = database
        self._store = store
        self._clock = clock

    async def preferences(self, user_id: str) -> Preferences:
        async with self._db.connect() as conn:
            return await self._store.preferences(conn, user_id)

    async def set_preferences(
        self,
        user_id: str,
        opted_out: Sequence[tuple[str, str]],
        quiet_hours: tuple[time, time, str] | None,
    ) -> Preferences:
        prefs = Preferences()
        try:
            for category, channel in opted_out:
                prefs = prefs.opt_out(category, parse_channels([channel])[0])
            if quiet_hours is not None:
                prefs = replace(prefs, quiet_hours=QuietHours(*quiet_hours))
        except NotificationError as exc:
            raise errors.Invalid(str(exc), field="preferences") from None
        async with self._db.transaction() as conn:
            await self._store.save_preferences(conn, user_id, prefs)
        return prefs

    async def add_device(self, user_id: str, platform: str, token: str) -> DeviceToken:
        device = DeviceToken(PushPlatform(platform), token)
        async with self._db.transaction() as conn:
            await self._store.add_device(conn, user_id, device, self._clock.now())
        return device

    async def remove_device(self, user_id: str, token: str) -> None:
        async with self._db.transaction() as conn:
            if not await self._store.remove_device(conn, token, user_id):
                raise errors.NotFound("no such device token for this user")

    async def devices(self, user_id: str) -> tuple[DeviceToken, ...]:
        async with self._db.connect() as conn:
            return await self._store.devices(conn, user_id)

    async def inbox(
        self, user_id: str, cursor: str | None, limit: int
    ) -> tuple[list[InboxItem], str | None, int]:
        async with self._db.connect() as conn:
            items = await self._store.inbox_page(conn, user_id, cursor, limit + 1)
            unread = await self._store.unread_count(conn, user_id)
        more = len(items) > limit
        items = items[:limit]
        return items, (items[-1].id if more and items else None), unread

    async def unread(self, user_id: str) -> int:
        async with self._db.connect() as conn:
            return await self._store.unread_count(conn, user_id)

    async def mark_read(self, user_id: str, item_id: str | None) -> int:
        async with self._db.transaction() as conn:
            if item_id is not None and not await self._store.inbox_item_exists(
                conn, user_id, item_id
            ):
                raise errors.NotFound(f"no inbox item {item_id}")
            return await self._store.mark_read(conn, user_id, item_id, self._clock.now())
