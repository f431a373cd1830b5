"""In-memory fakes of the notifications ports, for unit tests of its services (milliseconds, no
database). `tests/contract/notifications/test_stores.py` runs one suite against these and the
SQL stores, so a fake cannot drift from what the real ones do."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from townhall.notifications.domain import (
    Attempt,
    Channel,
    Delivery,
    DeliveryStatus,
    DeviceToken,
    Notification,
    Preferences,
    SendOutcome,
)
from townhall.notifications.messages import delivery_requests
from townhall.notifications.ports import (
    DeliveryToSend,
    InboxItem,
    NewNotification,
    Recipient,
    Rendering,
    StoredRequest,
)
from townhall.platform.messaging import Envelope


@dataclass
class _Row:
    delivery: Delivery  # its attempts are kept here too
    rendering: Rendering
    version: int = 1
    claimed_until: datetime | None = None


@dataclass
class MemoryNotifications:
    """What the SQL tables hold, in dicts; `published` is the outbox, in order."""

    notifications: dict[str, NewNotification] = field(default_factory=dict)
    keys: dict[tuple[str, str], StoredRequest] = field(default_factory=dict)
    rows: dict[tuple[str, Channel], _Row] = field(default_factory=dict)
    preferences: dict[str, Preferences] = field(default_factory=dict)
    devices: dict[str, tuple[str, DeviceToken]] = field(default_factory=dict)  # by token
    inbox: dict[str, tuple[str, InboxItem]] = field(default_factory=dict)  # by id
    published: list[tuple[str, Envelope]] = field(default_factory=list)

    def stores(
        self,
    ) -> tuple[FakeRequests, FakeDeliveries, FakePreferences, FakeDevices, FakeInbox]:
        return (
            FakeRequests(self),
            FakeDeliveries(self),
            FakePreferences(self),
            FakeDevices(self),
            FakeInbox(self),
        )


class FakeRequests:
    def __init__(self, memory: MemoryNotifications) -> None:
        self._m = memory

    async def add(self, new: NewNotification) -> bool:
        key = new.idempotency_key
        if key is not None and (new.requested_by, key) in self._m.keys:
            return False
        notification = new.notification
        nid = str(notification.id)
        self._m.notifications[nid] = new
        if key is not None:
            self._m.keys[(new.requested_by, key)] = StoredRequest(nid, new.request_hash)
        for channel in notification.deliveries:
            self._m.rows[(nid, channel)] = _Row(
                Delivery(notification.id, channel), new.renderings[channel]
            )
        wanted = [
            (nid, channel, str(notification.recipient)) for channel in notification.deliveries
        ]
        self._m.published += delivery_requests(wanted)
        return True

    async def by_idempotency_key(self, requested_by: str, key: str) -> StoredRequest | None:
        return self._m.keys.get((requested_by, key))

    async def get(self, notification_id: str) -> Notification | None:
        new = self._m.notifications.get(notification_id)
        if new is None:
            return None
        deliveries = {
            channel: copy.deepcopy(row.delivery)
            for (nid, channel), row in sorted(self._m.rows.items())
            if nid == notification_id
        }
        return replace(new.notification, deliveries=deliveries)


class FakeDeliveries:
    def __init__(self, memory: MemoryNotifications) -> None:
        self._m = memory

    async def recipient_of(self, notification_id: str) -> str | None:
        new = self._m.notifications.get(notification_id)
        return None if new is None else str(new.notification.recipient)

    async def to_send(self, channel: Channel, notification_id: str) -> DeliveryToSend | None:
        row = self._m.rows.get((notification_id, channel))
        if row is None:
            return None
        notification = self._m.notifications[notification_id].notification
        recipient = str(notification.recipient)
        delivery = replace(row.delivery, attempts=[])  # as read: without its attempts
        return DeliveryToSend(
            delivery,
            row.rendering,
            recipient,
            notification.category,
            self._m.preferences.get(recipient, Preferences()),
            row.claimed_until,
            row.version,
        )

    async def claim(
        self, channel: Channel, notification_id: str, version: int, now: datetime, hold: timedelta
    ) -> bool:
        row = self._m.rows.get((notification_id, channel))
        if row is None or row.version != version:
            return False
        row.delivery.status = DeliveryStatus.SENDING
        row.delivery.held_until = None
        row.claimed_until = now + hold
        row.version += 1
        return True

    async def finish(
        self, delivery: Delivery, claimed_version: int, attempt: Attempt, now: datetime
    ) -> bool:
        row = self._m.rows.get((str(delivery.notification_id), delivery.channel))
        if row is None or row.version != claimed_version:
            return False
        if row.delivery.status is not DeliveryStatus.SENDING:
            return False
        self._write(row, delivery, [attempt])
        return True

    async def save(self, delivery: Delivery, now: datetime, read_version: int) -> bool:
        row = self._m.rows.get((str(delivery.notification_id), delivery.channel))
        if row is None or row.version != read_version:
            return False
        self._write(row, delivery, [])
        return True

    async def put_in_inbox(self, found: DeliveryToSend, now: datetime) -> bool:
        delivery = found.delivery
        nid = str(delivery.notification_id)
        row = self._m.rows.get((nid, delivery.channel))
        if row is None or row.version != found.version:
            return False
        if nid in self._m.inbox:
            raise AssertionError(f"a second inbox row for {nid}")
        self._write(row, delivery, delivery.attempts[-1:])
        rendering = found.rendering
        item = InboxItem(nid, found.category, rendering.subject, rendering.body, now, None)
        self._m.inbox[nid] = (found.recipient, item)
        return True

    async def release_held(self, now: datetime) -> int:
        due = [
            (nid, channel, str(self._m.notifications[nid].notification.recipient))
            for (nid, channel), row in self._m.rows.items()
            if row.delivery.held_until is not None
            and row.delivery.held_until <= now
            and row.delivery.status is DeliveryStatus.PENDING
        ]
        for nid, channel, _ in due:
            row = self._m.rows[(nid, channel)]
            row.delivery.held_until = None
            row.version += 1
        self._m.published += delivery_requests(due)
        return len(due)

    @staticmethod
    def _write(row: _Row, delivery: Delivery, attempts: list[Attempt]) -> None:
        kept = row.delivery.attempts + list(attempts)
        row.delivery = replace(delivery, attempts=kept)
        row.claimed_until = None
        row.version += 1


class FakePreferences:
    def __init__(self, memory: MemoryNotifications) -> None:
        self._m = memory

    async def get(self, user_id: str) -> Preferences:
        return self._m.preferences.get(user_id, Preferences())

    async def put(self, user_id: str, preferences: Preferences) -> None:
        self._m.preferences[user_id] = preferences


class FakeDevices:
    def __init__(self, memory: MemoryNotifications) -> None:
        self._m = memory

    async def of_user(self, user_id: str) -> tuple[DeviceToken, ...]:
        return tuple(device for owner, device in self._m.devices.values() if owner == user_id)

    async def add(self, user_id: str, device: DeviceToken, now: datetime) -> None:
        self._m.devices.pop(device.token, None)  # a moved token is the newest
        self._m.devices[device.token] = (user_id, device)

    async def remove(self, token: str, user_id: str | None = None) -> bool:
        owner = self._m.devices.get(token, (None, None))[0]
        if owner is None or (user_id is not None and owner != user_id):
            return False
        del self._m.devices[token]
        return True


class FakeInbox:
    def __init__(self, memory: MemoryNotifications) -> None:
        self._m = memory

    async def page(self, user_id: str, before: str | None, limit: int) -> list[InboxItem]:
        items = sorted(
            (item for owner, item in self._m.inbox.values() if owner == user_id),
            key=lambda item: item.id,
            reverse=True,
        )
        return [item for item in items if before is None or item.id < before][:limit]

    async def unread(self, user_id: str) -> int:
        return sum(
            1 for owner, item in self._m.inbox.values() if owner == user_id and not item.read_at
        )

    async def mark_read(self, user_id: str, item_id: str | None, at: datetime) -> int | None:
        mine = {iid: item for iid, (owner, item) in self._m.inbox.items() if owner == user_id}
        if item_id is not None and item_id not in mine:
            return None
        marked = 0
        for iid, item in mine.items():
            if (item_id is None or iid == item_id) and item.read_at is None:
                self._m.inbox[iid] = (user_id, replace(item, read_at=at))
                marked += 1
        return marked


@dataclass(frozen=True)
class Person:
    """A recipient as identity's facade gives it."""

    id: str
    email: str | None = None
    phone: str | None = None
    time_zone: str = "UTC"
    locale: str = "en"


class FakeDirectory:
    """Identity's facade: known people, and how many times each was asked for."""

    def __init__(self, *people: Person) -> None:
        self.people = {person.id: person for person in people}
        self.asked: list[str] = []

    def add(self, **fields: Any) -> Person:
        person = Person(id=str(uuid.uuid4()), **fields)
        self.people[person.id] = person
        return person

    async def contacts(self, user_ids: Collection[str]) -> Mapping[str, Recipient]:
        self.asked += sorted(user_ids)
        return {uid: self.people[uid] for uid in user_ids if uid in self.people}

    async def find(self, user_id: str) -> Recipient | None:
        """The `Recipients` port, unbatched."""
        return (await self.contacts([user_id])).get(user_id)


class ScriptedSender:
    """A sender whose answers are scripted in order (then the last one again); it keeps what
    it was asked to send."""

    def __init__(self, *answers: SendOutcome, name: str = "scripted") -> None:
        self.name = name
        self._answers = list(answers)
        self.sent: list[Any] = []

    async def send(self, message: Any) -> SendOutcome:
        self.sent.append(message)
        return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]

    async def aclose(self) -> None:
        return None
