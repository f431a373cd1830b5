"""Notifications' bus entry points: the consumer group of each channel (its `DeliveryWorker`),
and the handlers of the events that ask for notifications (identity's `UserRegistered`, our
own `NotificationRequested`, orders' and shipping's events that concern a buyer, chat's
mentions, the feed's follows, likes and comments, uploads' scan results)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from townhall.identity.events import TOPIC as IDENTITY_TOPIC
from townhall.identity.events import UserRegistered
from townhall.notifications.chat_notices import TOPICS as CHAT_TOPICS
from townhall.notifications.chat_notices import notice_for as chat_notice_for
from townhall.notifications.domain import Channel
from townhall.notifications.events import TOPIC, NotificationRequested
from townhall.notifications.feed_notices import TOPICS as FEED_TOPICS
from townhall.notifications.feed_notices import Usernames, request_for
from townhall.notifications.feed_notices import notice_for as feed_notice_for
from townhall.notifications.messages import topic_for
from townhall.notifications.order_notices import TOPICS as ORDER_TOPICS
from townhall.notifications.order_notices import notice_for
from townhall.notifications.service import Accepted, DeliveryWorker, IdempotencyKeyReused
from townhall.notifications.upload_notices import TOPICS as UPLOAD_TOPICS
from townhall.notifications.upload_notices import notice_for as upload_notice_for
from townhall.platform.messaging import ConsumerSpec, Envelope, Handler
from townhall.platform.observability import get_logger
from townhall.shipping.events import ShipmentDispatched

WELCOME_GROUP = "notifications.welcome"
REQUESTS_GROUP = "notifications.requests"
ORDERS_GROUP = "notifications.orders"
CHAT_GROUP = "notifications.chat"
FEED_GROUP = "notifications.feed"
UPLOADS_GROUP = "notifications.uploads"

log = get_logger("townhall.notifications")


class Notifier(Protocol):
    async def notify(self, request: NotificationRequested, *, requested_by: str) -> Accepted: ...


class ChannelWorkers:
    """One consumer group per channel (`notifications.email`, ...), on the channel's topic.
    A group's worker is built when the group starts in this process; `running` says which
    channels are delivered here (the development outbox shows them)."""

    def __init__(self, make: Callable[[Channel], DeliveryWorker], *, max_attempts: int) -> None:
        self._make = make
        self._max_attempts = max_attempts
        self.running: set[Channel] = set()

    def consumers(self) -> list[ConsumerSpec]:
        return [
            ConsumerSpec(
                topic=topic_for(channel),
                group=topic_for(channel),
                handler_factory=self._factory(channel),
                max_attempts=self._max_attempts,
            )
            for channel in Channel
        ]

    def _factory(self, channel: Channel) -> Callable[[], Handler]:
        def build() -> Handler:
            self.running.add(channel)
            return self._make(channel).handle

        return build


def event_consumers(notifier: Notifier) -> list[ConsumerSpec]:
    """A welcome notification for each new user; a notification for each
    `NotificationRequested` another module published."""

    async def on_user_registered(envelope: Envelope) -> None:
        if envelope.type != UserRegistered.type:
            return
        user_id = str(envelope.payload["user_id"])
        await notifier.notify(
            NotificationRequested(
                recipient=user_id,
                channels=["email", "in_app"],
                category="account",
                template="welcome",
                data={"name": envelope.payload.get("username", "")},
                # A redelivered event finds this key taken and creates nothing new.
                idempotency_key=f"welcome:{user_id}",
            ),
            requested_by=f"event:{UserRegistered.type}",
        )

    async def on_requested(envelope: Envelope) -> None:
        if envelope.type != NotificationRequested.type:
            return
        fields = dict(envelope.payload)
        fields.setdefault("idempotency_key", str(envelope.id))
        await notifier.notify(NotificationRequested(**fields), requested_by="event")

    return [
        ConsumerSpec(IDENTITY_TOPIC, WELCOME_GROUP, lambda: on_user_registered),
        ConsumerSpec(TOPIC, REQUESTS_GROUP, lambda: on_requested),
    ]


def order_consumers(notifier: Notifier) -> list[ConsumerSpec]:
    """The buyer's notices: one group, `notifications.orders`, on orders' topic (confirmed,
    failed, cancelled) and on shipping's (dispatched). Each fact of an order notifies once:
    its idempotency key is the order and the fact (`order_notices`)."""

    async def on_order_event(envelope: Envelope) -> None:
        request = notice_for(envelope.type, envelope.payload)
        if request is None:
            if envelope.type == ShipmentDispatched.type:
                log.warning("order notice without a buyer", type=envelope.type, key=envelope.key)
            return
        try:
            await notifier.notify(request, requested_by=f"event:{envelope.type}")
        except IdempotencyKeyReused:
            # The buyer was told of this fact already, from another version of the event.
            log.warning("order notice given already", type=envelope.type, key=envelope.key)

    return [ConsumerSpec(topic, ORDERS_GROUP, lambda: on_order_event) for topic in ORDER_TOPICS]


def chat_consumers(notifier: Notifier) -> list[ConsumerSpec]:
    """The mentioned user's notices: one group, `notifications.chat`, on chat's topic. Each
    mention notifies once: its idempotency key is the message and the user (`chat_notices`)."""

    async def on_chat_event(envelope: Envelope) -> None:
        request = chat_notice_for(envelope.type, envelope.payload)
        if request is None:
            return
        try:
            await notifier.notify(request, requested_by=f"event:{envelope.type}")
        except IdempotencyKeyReused:
            # The user was told of this mention already, from another version of the event.
            log.warning("mention notice given already", type=envelope.type, key=envelope.key)

    return [ConsumerSpec(topic, CHAT_GROUP, lambda: on_chat_event) for topic in CHAT_TOPICS]


def feed_consumers(notifier: Notifier, usernames: Usernames) -> list[ConsumerSpec]:
    """The author's notices of a new follower, a like and a comment: one group,
    `notifications.feed`, on the feed's topic, in-app only, naming the actor by the username
    `usernames` (identity's facade) knows. Nobody is told of their own action. Each fact
    notifies once: its idempotency key is the fact's natural key (`feed_notices`)."""

    async def on_feed_event(envelope: Envelope) -> None:
        notice = feed_notice_for(envelope.type, envelope.payload)
        if notice is None:
            return
        request = await request_for(notice, usernames)
        try:
            await notifier.notify(request, requested_by=f"event:{envelope.type}")
        except IdempotencyKeyReused:
            # Told already, from another version of the event (or under an older username).
            log.warning("feed notice given already", type=envelope.type, key=envelope.key)

    return [ConsumerSpec(topic, FEED_GROUP, lambda: on_feed_event) for topic in FEED_TOPICS]


def upload_consumers(notifier: Notifier) -> list[ConsumerSpec]:
    """The owner's notice of their upload's scan result: one group, `notifications.uploads`, on
    uploads' topic. Each upload notifies once: its idempotency key is the upload's
    (`upload_notices`)."""

    async def on_upload_event(envelope: Envelope) -> None:
        request = upload_notice_for(envelope.type, envelope.payload)
        if request is None:
            return
        try:
            await notifier.notify(request, requested_by=f"event:{envelope.type}")
        except IdempotencyKeyReused:
            log.warning("upload notice given already", type=envelope.type, key=envelope.key)

    return [ConsumerSpec(topic, UPLOADS_GROUP, lambda: on_upload_event) for topic in UPLOAD_TOPICS]
