"""One contract for the notifications store ports, run against the SQL stores on SQLite and on
PostgreSQL and against the in-memory fakes the unit tests use: the fakes behave as the real
stores do, or this fails."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

import townhall.notifications
from support.databases import migrated_database, outbox_envelopes
from support.notification_fakes import MemoryNotifications
from townhall.notifications.adapters.sql import (
    SqlDeliveries,
    SqlDevices,
    SqlInbox,
    SqlNotificationRequests,
    SqlPreferenceStore,
)
from townhall.notifications.domain import (
    Channel,
    Content,
    Delivered,
    DeliveryStatus,
    DeviceToken,
    Notification,
    Preferences,
    PushPlatform,
    QuietHours,
)
from townhall.notifications.messages import DeliveryRequested
from townhall.notifications.ports import (
    Deliveries,
    Devices,
    Inbox,
    NewNotification,
    NotificationRequests,
    PreferenceStore,
    Rendering,
)
from townhall.platform.clock import FrozenClock
from townhall.platform.messaging import Envelope

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
MIGRATIONS = Path(townhall.notifications.__file__).parent / "migrations"


@dataclass
class Stores:
    requests: NotificationRequests
    deliveries: Deliveries
    preferences: PreferenceStore
    devices: Devices
    inbox: Inbox
    published: Callable[[], object]  # async: the outbox's (topic, envelope), in order


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def stores(request, tmp_path) -> AsyncIterator[Stores]:
    if request.param == "memory":
        memory = MemoryNotifications()

        async def published_in_memory() -> list[tuple[str, Envelope]]:
            return list(memory.published)

        yield Stores(*memory.stores(), published_in_memory)
        return
    async with migrated_database(request.param, tmp_path, [MIGRATIONS]) as database:

        async def published_in_outbox() -> list[tuple[str, Envelope]]:
            return await outbox_envelopes(database)

        yield Stores(
            SqlNotificationRequests(database),
            SqlDeliveries(database),
            SqlPreferenceStore(database),
            SqlDevices(database),
            SqlInbox(database),
            published_in_outbox,
        )


def new(*channels: Channel, key: str | None = None, recipient: str | None = None):
    notification = Notification.request(
        recipient=uuid.UUID(recipient) if recipient else uuid.uuid4(),
        channels=channels,
        category="social",
        content=Content(subject="Hi", body="Hello"),
        clock=FrozenClock(NOW),
    )
    renderings = {channel: Rendering("Hi", f"Hello by {channel}") for channel in channels}
    return NewNotification(notification, renderings, "tester", key, "hash" if key else None)


async def test_an_added_notification_is_pending_on_each_channel_and_asked_for(stores):
    item = new(Channel.EMAIL, Channel.IN_APP)
    nid, recipient = str(item.notification.id), str(item.notification.recipient)
    assert await stores.requests.add(item)
    stored = await stores.requests.get(nid)
    assert stored is not None and stored.recipient == item.notification.recipient
    assert {c: d.status for c, d in stored.deliveries.items()} == {
        Channel.EMAIL: DeliveryStatus.PENDING,
        Channel.IN_APP: DeliveryStatus.PENDING,
    }
    found = await stores.deliveries.to_send(Channel.EMAIL, nid)
    assert found is not None
    assert (found.recipient, found.category, found.rendering) == (
        recipient,
        "social",
        Rendering("Hi", "Hello by email"),
    )
    assert found.preferences == Preferences()
    assert await stores.deliveries.recipient_of(nid) == recipient
    asked = {
        topic: DeliveryRequested.from_payload(envelope.payload).asked
        for topic, envelope in await stores.published()
    }
    assert asked == {
        "notifications.email": ((nid, recipient),),
        "notifications.in_app": ((nid, recipient),),
    }


async def test_a_taken_idempotency_key_adds_nothing(stores):
    first, second = new(Channel.EMAIL, key="k"), new(Channel.EMAIL, key="k")
    assert await stores.requests.add(first)
    assert not await stores.requests.add(second)
    assert await stores.requests.get(str(second.notification.id)) is None
    stored = await stores.requests.by_idempotency_key("tester", "k")
    assert stored is not None and stored.notification_id == str(first.notification.id)
    assert await stores.requests.by_idempotency_key("someone else", "k") is None
    assert len(await stores.published()) == 1


async def test_nothing_is_found_for_a_notification_that_does_not_exist(stores):
    nobody = str(uuid.uuid4())
    assert await stores.requests.get(nobody) is None
    assert await stores.deliveries.to_send(Channel.EMAIL, nobody) is None
    assert await stores.deliveries.recipient_of(nobody) is None


async def test_a_delivery_is_claimed_once_per_version_and_finished_only_by_its_claim(stores):
    item = new(Channel.EMAIL)
    nid = str(item.notification.id)
    await stores.requests.add(item)
    read = await stores.deliveries.to_send(Channel.EMAIL, nid)
    hold = timedelta(seconds=60)
    assert await stores.deliveries.claim(Channel.EMAIL, nid, read.version, NOW, hold)
    assert not await stores.deliveries.claim(Channel.EMAIL, nid, read.version, NOW, hold)
    claimed = await stores.deliveries.to_send(Channel.EMAIL, nid)
    assert claimed.delivery.status is DeliveryStatus.SENDING
    assert (claimed.version, claimed.claimed_until) == (read.version + 1, NOW + hold)

    delivery = claimed.delivery
    delivery.record(NOW, "smtp", Delivered("p-1"), final=False)
    attempt = delivery.attempts[-1]
    assert not await stores.deliveries.finish(delivery, read.version, attempt, NOW)  # stale
    assert await stores.deliveries.finish(delivery, claimed.version, attempt, NOW)
    assert not await stores.deliveries.finish(delivery, claimed.version, attempt, NOW)
    stored = (await stores.requests.get(nid)).deliveries[Channel.EMAIL]
    assert (stored.status, stored.provider_id) == (DeliveryStatus.SENT, "p-1")
    assert [a.provider for a in stored.attempts] == ["smtp"]  # one attempt, not three
    assert (await stores.deliveries.to_send(Channel.EMAIL, nid)).claimed_until is None


async def test_a_decision_is_saved_only_at_the_version_it_was_read_at(stores):
    item = new(Channel.EMAIL)
    nid = str(item.notification.id)
    await stores.requests.add(item)
    read = await stores.deliveries.to_send(Channel.EMAIL, nid)
    read.delivery.hold(NOW + timedelta(hours=1))
    assert await stores.deliveries.save(read.delivery, NOW, read.version)
    assert not await stores.deliveries.save(read.delivery, NOW, read.version)
    held = await stores.deliveries.to_send(Channel.EMAIL, nid)
    assert held.delivery.held_until == NOW + timedelta(hours=1)


async def test_held_deliveries_are_released_once_when_due_and_asked_for_again(stores):
    item = new(Channel.EMAIL)
    nid, recipient = str(item.notification.id), str(item.notification.recipient)
    await stores.requests.add(item)
    read = await stores.deliveries.to_send(Channel.EMAIL, nid)
    read.delivery.hold(NOW + timedelta(hours=1))
    await stores.deliveries.save(read.delivery, NOW, read.version)
    assert await stores.deliveries.release_held(NOW) == 0
    assert await stores.deliveries.release_held(NOW + timedelta(hours=1)) == 1
    assert await stores.deliveries.release_held(NOW + timedelta(hours=2)) == 0
    released = await stores.deliveries.to_send(Channel.EMAIL, nid)
    assert released.delivery.held_until is None
    assert released.version == read.version + 2
    topic, envelope = (await stores.published())[-1]
    assert topic == "notifications.email"
    assert DeliveryRequested.from_payload(envelope.payload).asked == ((nid, recipient),)


async def test_an_in_app_delivery_writes_its_inbox_row_once(stores):
    item = new(Channel.IN_APP)
    nid, user = str(item.notification.id), str(item.notification.recipient)
    await stores.requests.add(item)
    found = await stores.deliveries.to_send(Channel.IN_APP, nid)
    found.delivery.start_sending()
    found.delivery.record(NOW, "inbox", Delivered(nid), final=True)
    assert await stores.deliveries.put_in_inbox(found, NOW)
    assert not await stores.deliveries.put_in_inbox(found, NOW)  # the version moved on
    [row] = await stores.inbox.page(user, None, 10)
    assert (row.id, row.subject, row.body, row.read_at) == (nid, "Hi", "Hello by in_app", None)
    assert await stores.inbox.unread(user) == 1
    stored = (await stores.requests.get(nid)).deliveries[Channel.IN_APP]
    assert (stored.status, len(stored.attempts)) == (DeliveryStatus.SENT, 1)


async def test_the_inbox_marks_read_one_or_all_and_knows_what_is_not_there(stores):
    user = str(uuid.uuid4())
    ids = []
    for _ in range(3):
        item = new(Channel.IN_APP, recipient=user)
        nid = str(item.notification.id)
        await stores.requests.add(item)
        found = await stores.deliveries.to_send(Channel.IN_APP, nid)
        found.delivery.start_sending()
        found.delivery.record(NOW, "inbox", Delivered(nid), final=True)
        await stores.deliveries.put_in_inbox(found, NOW)
        ids.append(nid)
    assert [i.id for i in await stores.inbox.page(user, None, 2)] == ids[::-1][:2]
    assert [i.id for i in await stores.inbox.page(user, ids[1], 10)] == [ids[0]]
    assert await stores.inbox.mark_read(user, ids[0], NOW) == 1
    assert await stores.inbox.mark_read(user, ids[0], NOW) == 0
    assert await stores.inbox.mark_read(user, "nothing-here", NOW) is None
    assert await stores.inbox.mark_read(str(uuid.uuid4()), ids[1], NOW) is None  # not theirs
    assert await stores.inbox.mark_read(user, None, NOW) == 2
    assert await stores.inbox.unread(user) == 0


async def test_preferences_are_kept_per_user(stores):
    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    prefs = Preferences(
        opted_out=frozenset({("social", Channel.PUSH), ("news", Channel.EMAIL)}),
        quiet_hours=QuietHours(time(22, 0), time(7, 30), "Europe/Paris"),
    )
    assert await stores.preferences.get(ada) == Preferences()
    await stores.preferences.put(ada, prefs)
    assert await stores.preferences.get(ada) == prefs
    await stores.preferences.put(ada, Preferences())
    assert await stores.preferences.get(ada) == Preferences()
    assert await stores.preferences.get(bob) == Preferences()


async def test_a_device_token_belongs_to_one_user_and_is_removed_only_by_them(stores):
    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    first, second = DeviceToken(PushPlatform.FCM, "t1"), DeviceToken(PushPlatform.APNS, "t2")
    await stores.devices.add(ada, first, NOW)
    await stores.devices.add(ada, second, NOW + timedelta(seconds=1))
    assert await stores.devices.of_user(ada) == (first, second)  # oldest first
    await stores.devices.add(bob, first, NOW + timedelta(seconds=2))
    assert await stores.devices.of_user(ada) == (second,)
    assert await stores.devices.of_user(bob) == (first,)
    assert not await stores.devices.remove("t1", ada)  # bob's now
    assert await stores.devices.remove("t1", bob)
    assert await stores.devices.remove("t2")  # a dead token, whoever holds it
    assert not await stores.devices.remove("t2")
    assert await stores.devices.of_user(ada) == ()
