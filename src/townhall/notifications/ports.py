"""What the notifications services need from the world, as protocols: where requests,
deliveries, preferences, devices and the inbox are kept; who a recipient is; a sender per
channel; and what the development outbox reads of the built-in sinks.

Each store port is one unit of work per call: an adapter may group concurrent calls into one
statement or one transaction (the SQL adapters do), take a faster path on one database, or
keep everything in memory (the unit tests' fakes); the services never know which.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from townhall.notifications.domain import (
    Attempt,
    Channel,
    Delivery,
    DeviceToken,
    EmailMessage,
    Notification,
    Preferences,
    PushMessage,
    SendOutcome,
    SmsMessage,
)

# --- values the stores take and give ------------------------------------------------------


@dataclass(frozen=True)
class Rendering:
    """What one channel will send, rendered when the request was accepted."""

    subject: str | None
    body: str
    html: str | None = None


@dataclass(frozen=True)
class NewNotification:
    """A notification to record, with what each channel will send and who asked, how."""

    notification: Notification
    renderings: Mapping[Channel, Rendering]
    requested_by: str
    idempotency_key: str | None
    request_hash: str | None


@dataclass(frozen=True)
class StoredRequest:
    """The notification an (requester, idempotency key) pair was first used for."""

    notification_id: str
    request_hash: str | None


@dataclass(frozen=True)
class DeliveryToSend:
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
class InboxItem:
    id: str
    category: str
    subject: str | None
    body: str
    created_at: datetime
    read_at: datetime | None


# --- stores ---------------------------------------------------------------------------------


class NotificationRequests(Protocol):
    """Accepted notifications, each with its PENDING deliveries."""

    async def add(self, new: NewNotification) -> bool:
        """Record the notification, its PENDING deliveries, and the messages asking each
        channel's worker to deliver them (`DeliveryRequested`, through the outbox), as one
        unit of work. False, writing nothing, if its (requester, idempotency key) is taken."""
        ...

    async def by_idempotency_key(self, requested_by: str, key: str) -> StoredRequest | None: ...

    async def get(self, notification_id: str) -> Notification | None:
        """The notification with its deliveries and their attempts."""
        ...


class Deliveries(Protocol):
    """One channel's delivery of a notification, written only at the version it was read at
    (optimistic concurrency: two workers holding copies of one message cannot both send)."""

    async def recipient_of(self, notification_id: str) -> str | None: ...

    async def to_send(self, channel: Channel, notification_id: str) -> DeliveryToSend | None:
        """The delivery as it is now, with what sending it needs; None if there is none."""
        ...

    async def claim(
        self, channel: Channel, notification_id: str, version: int, now: datetime, hold: timedelta
    ) -> bool:
        """Mark the delivery SENDING, claimed until `now + hold`, if it is still at `version`
        (then its version is `version + 1`); False, writing nothing, otherwise."""
        ...

    async def finish(
        self, delivery: Delivery, claimed_version: int, attempt: Attempt, now: datetime
    ) -> bool:
        """Record a send's outcome (the delivery's state) and its attempt, if the delivery is
        still the version this worker claimed; False, writing nothing, if another worker took
        it over or finished it."""
        ...

    async def save(self, delivery: Delivery, now: datetime, read_version: int) -> bool:
        """Write a decision that sends nothing (skipped, held) if the delivery is still at
        `read_version`; False, writing nothing, otherwise."""
        ...

    async def put_in_inbox(self, found: DeliveryToSend, now: datetime) -> bool:
        """The in-app delivery: record `found.delivery` (SENT, with its last attempt) and write
        its inbox row, together and only if the delivery is still at `found.version`, so the
        row is written exactly once; False, writing nothing, otherwise."""
        ...

    async def release_held(self, now: datetime) -> int:
        """End the hold of deliveries whose quiet hours are over and ask their channels'
        workers for them again, as one unit of work: how many were released."""
        ...


class PreferenceStore(Protocol):
    async def get(self, user_id: str) -> Preferences:
        """The user's preferences; the defaults if they never set any."""
        ...

    async def put(self, user_id: str, preferences: Preferences) -> None: ...


class Devices(Protocol):
    """The push device tokens of each user."""

    async def of_user(self, user_id: str) -> tuple[DeviceToken, ...]:
        """Oldest first."""
        ...

    async def add(self, user_id: str, device: DeviceToken, now: datetime) -> None:
        """Register a token; one registered by someone else moves to this user."""
        ...

    async def remove(self, token: str, user_id: str | None = None) -> bool:
        """Forget a token (only if it is `user_id`'s, when given): whether it was there."""
        ...


class Inbox(Protocol):
    """The in-app inbox: its rows are written by `Deliveries.put_in_inbox`."""

    async def page(self, user_id: str, before: str | None, limit: int) -> list[InboxItem]:
        """Newest first, those older than the item `before` when given."""
        ...

    async def unread(self, user_id: str) -> int: ...

    async def mark_read(self, user_id: str, item_id: str | None, at: datetime) -> int | None:
        """Mark one item read (or all, when `item_id` is None): how many changed, or None
        when the user has no item `item_id`."""
        ...


# --- other modules and providers --------------------------------------------------------------


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
    """Who users are and how to reach them (identity's facade)."""

    async def contacts(self, user_ids: Collection[str]) -> Mapping[str, Recipient]:
        """Many at once, by id; an unknown id is absent."""
        ...


class Recipients(Protocol):
    """One recipient at a time, as the services ask (an adapter over a `Directory` batches
    and may cache)."""

    async def find(self, user_id: str) -> Recipient | None: ...


MessageT = TypeVar("MessageT", contravariant=True)


class Sender(Protocol[MessageT]):
    """Sends one message on one channel. It classifies what its provider answered (see
    `SendOutcome` in the domain) instead of raising: the worker decides from the outcome
    whether to record SENT, retry, or fail at once. A push sender sends to one device; a
    `Permanent(token_dead=True)` answer means remove that token."""

    name: str

    async def send(self, message: MessageT) -> SendOutcome: ...

    async def aclose(self) -> None: ...


EmailSender = Sender[EmailMessage]
SmsSender = Sender[SmsMessage]
PushSender = Sender[PushMessage]


# --- what the development outbox reads ------------------------------------------------------


class SinkRecord(Protocol):
    """One message a built-in sink kept, as the development outbox shows it."""

    def as_dict(self) -> dict[str, str]: ...


class EmailSinkView(Protocol):
    @property
    def messages(self) -> Sequence[SinkRecord]: ...


class SentSinkView(Protocol):
    """The SMS or the push sink."""

    @property
    def sent(self) -> Sequence[SinkRecord]: ...
