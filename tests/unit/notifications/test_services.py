"""Notifications' services against in-memory fakes of their ports: accepting a request,
delivering it per channel, releasing held deliveries, and the user's settings and inbox."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from support.notification_fakes import FakeDirectory, MemoryNotifications, ScriptedSender
from townhall.notifications.domain import (
    Channel,
    Delivered,
    DeliveryStatus,
    Permanent,
    Preferences,
    PushPlatform,
    QuietHours,
    SkipReason,
    Transient,
)
from townhall.notifications.messages import DeliveryRequested
from townhall.notifications.service import (
    DeliveryFailed,
    DeliveryWorker,
    HeldReleaser,
    IdempotencyKeyReused,
    NotificationNotFound,
    NotificationRequest,
    NotificationService,
    TransientFailure,
    UnknownRecipient,
    UserSettings,
)
from townhall.notifications.templates import TemplateRenderer
from townhall.platform import errors
from townhall.platform.clock import FrozenClock
from townhall.platform.messaging import Envelope, Retry

NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class World:
    """The services of one installation over one in-memory store."""

    def __init__(self) -> None:
        self.clock = FrozenClock(NOON)
        self.memory = MemoryNotifications()
        requests, deliveries, preferences, devices, inbox = self.memory.stores()
        self.deliveries, self.devices = deliveries, devices
        self.directory = FakeDirectory()
        self.service = NotificationService(requests, self.directory, TemplateRenderer(), self.clock)
        self.settings = UserSettings(preferences, devices, inbox, self.directory, self.clock)
        self.releaser = HeldReleaser(deliveries, self.clock)

    def worker(self, channel: Channel, sender: ScriptedSender | None, attempts: int = 3):
        return DeliveryWorker(
            channel,
            self.deliveries,
            self.devices,
            self.directory,
            sender,
            self.clock,
            max_attempts=attempts,
        )

    async def notify(self, recipient: str, *channels: str, key: str | None = None) -> str:
        accepted = await self.service.request(
            NotificationRequest(recipient, list(channels), subject="Hi", body="Hello"),
            requested_by="test",
            idempotency_key=key,
        )
        return accepted.id

    def messages(self, channel: Channel) -> list[Envelope]:
        return [e for topic, e in self.memory.published if topic == f"notifications.{channel}"]

    async def status(self, nid: str, channel: Channel) -> DeliveryStatus:
        return (await self.service.get(nid)).deliveries[channel].status


@pytest.fixture
def world() -> World:
    return World()


# --- accepting ------------------------------------------------------------------------------


async def test_an_accepted_request_is_pending_and_asks_each_channel_for_its_delivery(world):
    ada = world.directory.add(email="ada@example.org")
    nid = await world.notify(ada.id, "email", "in_app")
    notification = await world.service.get(nid)
    assert notification.status is DeliveryStatus.PENDING
    assert set(notification.deliveries) == {Channel.EMAIL, Channel.IN_APP}
    for channel in (Channel.EMAIL, Channel.IN_APP):
        [message] = world.messages(channel)
        assert DeliveryRequested.from_payload(message.payload).asked == ((nid, ada.id),)


async def test_a_retried_request_with_its_key_answers_as_the_first_and_adds_nothing(world):
    ada = world.directory.add()
    first = await world.notify(ada.id, "in_app", key="k1")
    again = await world.service.request(
        NotificationRequest(ada.id, ["in_app"], subject="Hi", body="Hello"),
        requested_by="test",
        idempotency_key="k1",
    )
    assert (again.id, again.created) == (first, False)
    assert len(world.memory.notifications) == 1
    assert len(world.messages(Channel.IN_APP)) == 1


async def test_a_key_reused_for_another_request_is_refused_naming_the_header(world):
    ada = world.directory.add()
    await world.notify(ada.id, "in_app", key="k1")
    with pytest.raises(IdempotencyKeyReused) as refused:
        await world.service.request(
            NotificationRequest(ada.id, ["in_app"], subject="Hi", body="Other"),
            requested_by="test",
            idempotency_key="k1",
        )
    assert refused.value.field == "Idempotency-Key"
    assert len(world.memory.notifications) == 1


@pytest.mark.parametrize("recipient", ["not-a-uuid", "0193a2b4-0000-7000-8000-000000000000"])
async def test_a_request_for_no_known_user_is_refused_and_nothing_is_recorded(world, recipient):
    with pytest.raises(UnknownRecipient):
        await world.notify(recipient, "email")
    assert world.memory.notifications == {}
    assert world.memory.published == []


async def test_reading_a_notification_that_does_not_exist_is_not_found(world):
    with pytest.raises(NotificationNotFound):
        await world.service.get("0193a2b4-0000-7000-8000-000000000000")


# --- delivering -----------------------------------------------------------------------------


async def test_an_email_is_sent_once_and_recorded_sent_even_when_its_message_comes_twice(world):
    ada = world.directory.add(email="ada@example.org")
    nid = await world.notify(ada.id, "email")
    sender = ScriptedSender(Delivered("provider-1"))
    worker = world.worker(Channel.EMAIL, sender)
    [message] = world.messages(Channel.EMAIL)
    await worker.handle(message)
    await worker.handle(message)  # a redelivered copy
    assert [m.to for m in sender.sent] == ["ada@example.org"]
    delivery = (await world.service.get(nid)).deliveries[Channel.EMAIL]
    assert (delivery.status, delivery.provider_id) == (DeliveryStatus.SENT, "provider-1")
    assert [a.provider for a in delivery.attempts] == ["scripted"]


async def test_a_transient_answer_is_retried_by_the_bus_then_failed_on_the_last_attempt(world):
    ada = world.directory.add(email="ada@example.org")
    nid = await world.notify(ada.id, "email")
    worker = world.worker(Channel.EMAIL, ScriptedSender(Transient("busy")), attempts=2)
    [message] = world.messages(Channel.EMAIL)
    with pytest.raises(TransientFailure):
        await worker.handle(message)
    assert await world.status(nid, Channel.EMAIL) is DeliveryStatus.PENDING
    with pytest.raises(DeliveryFailed):
        await worker.handle(message.with_headers(attempt="2"))
    delivery = (await world.service.get(nid)).deliveries[Channel.EMAIL]
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "busy")
    assert len(delivery.attempts) == 2


async def test_a_provider_asking_to_wait_makes_the_bus_retry_after_that_time(world):
    ada = world.directory.add(email="ada@example.org")
    await world.notify(ada.id, "email")
    worker = world.worker(Channel.EMAIL, ScriptedSender(Transient("slow down", retry_after=7)))
    with pytest.raises(Retry) as retry:
        await worker.handle(world.messages(Channel.EMAIL)[0])
    assert retry.value.after == 7


async def test_a_permanent_answer_fails_the_delivery_at_once_without_a_retry(world):
    ada = world.directory.add(email="ada@example.org")
    nid = await world.notify(ada.id, "email")
    sender = ScriptedSender(Permanent("mailbox unknown"))
    await world.worker(Channel.EMAIL, sender).handle(world.messages(Channel.EMAIL)[0])
    assert await world.status(nid, Channel.EMAIL) is DeliveryStatus.FAILED


async def test_a_recipient_without_the_channels_contact_point_is_skipped(world):
    ada = world.directory.add()  # no phone
    nid = await world.notify(ada.id, "sms")
    sender = ScriptedSender(Delivered("x"))
    await world.worker(Channel.SMS, sender).handle(world.messages(Channel.SMS)[0])
    delivery = (await world.service.get(nid)).deliveries[Channel.SMS]
    assert (delivery.status, delivery.skip_reason) == (
        DeliveryStatus.SKIPPED,
        SkipReason.NO_CONTACT_POINT,
    )
    assert sender.sent == []


async def test_an_opted_out_category_is_skipped(world):
    ada = world.directory.add(email="ada@example.org")
    await world.settings.set_preferences(ada.id, [("general", "email")], None)
    nid = await world.notify(ada.id, "email")
    sender = ScriptedSender(Delivered("x"))
    await world.worker(Channel.EMAIL, sender).handle(world.messages(Channel.EMAIL)[0])
    assert (await world.service.get(nid)).deliveries[Channel.EMAIL].skip_reason is (
        SkipReason.OPTED_OUT
    )
    assert sender.sent == []


async def test_in_quiet_hours_a_delivery_is_held_then_released_and_sent_once(world):
    ada = world.directory.add(email="ada@example.org")
    await world.settings.set_preferences(ada.id, [], (time(11, 0), time(13, 0), "UTC"))
    nid = await world.notify(ada.id, "email")
    sender = ScriptedSender(Delivered("x"))
    worker = world.worker(Channel.EMAIL, sender)
    await worker.handle(world.messages(Channel.EMAIL)[0])
    held = (await world.service.get(nid)).deliveries[Channel.EMAIL]
    assert (held.status, held.held_until) == (DeliveryStatus.PENDING, NOON + timedelta(hours=1))
    assert sender.sent == []

    assert await world.releaser.release_due() == 0  # not yet
    world.clock.advance(hours=1)
    assert await world.releaser.release_due() == 1
    assert await world.releaser.release_due() == 0  # released once
    await worker.handle(world.messages(Channel.EMAIL)[-1])
    assert await world.status(nid, Channel.EMAIL) is DeliveryStatus.SENT
    assert len(sender.sent) == 1


async def test_an_in_app_delivery_is_one_inbox_row_whatever_the_copies(world):
    ada = world.directory.add()
    nid = await world.notify(ada.id, "in_app")
    worker = world.worker(Channel.IN_APP, None)
    [message] = world.messages(Channel.IN_APP)
    await worker.handle(message)
    await worker.handle(message)
    items, next_cursor, unread = await world.settings.inbox(ada.id, None, 10)
    assert ([i.id for i in items], next_cursor, unread) == ([nid], None, 1)
    assert await world.status(nid, Channel.IN_APP) is DeliveryStatus.SENT


async def test_a_push_token_the_provider_calls_dead_is_forgotten(world):
    ada = world.directory.add()
    await world.settings.add_device(ada.id, "fcm", "dead-token")
    await world.settings.add_device(ada.id, "apns", "live-token")
    nid = await world.notify(ada.id, "push")

    class PerToken(ScriptedSender):
        async def send(self, message):
            self.sent.append(message)
            if message.device.token == "dead-token":
                return Permanent("unregistered", token_dead=True)
            return Delivered("ok")

    await world.worker(Channel.PUSH, PerToken()).handle(world.messages(Channel.PUSH)[0])
    assert await world.status(nid, Channel.PUSH) is DeliveryStatus.SENT
    assert [d.token for d in await world.settings.devices(ada.id)] == ["live-token"]


async def test_a_delivery_claimed_by_another_worker_is_left_to_it_until_its_claim_ends(world):
    ada = world.directory.add(email="ada@example.org")
    nid = await world.notify(ada.id, "email")
    found = await world.deliveries.to_send(Channel.EMAIL, nid)
    claimed = await world.deliveries.claim(
        Channel.EMAIL, nid, found.version, NOON, timedelta(seconds=60)
    )
    assert claimed
    sender = ScriptedSender(Delivered("x"))
    with pytest.raises(Retry) as retry:
        await world.worker(Channel.EMAIL, sender).handle(world.messages(Channel.EMAIL)[0])
    assert retry.value.after == 60
    assert sender.sent == []


async def test_a_message_for_an_unknown_user_fails_it_for_the_bus(world):
    ada = world.directory.add(email="ada@example.org")
    await world.notify(ada.id, "email")
    del world.directory.people[ada.id]
    with pytest.raises(UnknownRecipient):
        await world.worker(Channel.EMAIL, ScriptedSender(Delivered("x"))).handle(
            world.messages(Channel.EMAIL)[0]
        )


# --- the user's settings ----------------------------------------------------------------------


async def test_preferences_are_kept_and_a_transactional_category_cannot_be_muted(world):
    ada = world.directory.add(time_zone="Europe/Paris")
    quiet = (time(22, 0), time(7, 0), await world.settings.time_zone_of(ada.id))
    await world.settings.set_preferences(ada.id, [("social", "push")], quiet)
    assert await world.settings.preferences(ada.id) == Preferences(
        opted_out=frozenset({("social", Channel.PUSH)}),
        quiet_hours=QuietHours(time(22, 0), time(7, 0), "Europe/Paris"),
    )
    with pytest.raises(errors.Invalid):
        await world.settings.set_preferences(ada.id, [("security", "email")], None)
    with pytest.raises(errors.Invalid):
        await world.settings.set_preferences(ada.id, [("social", "pigeon")], None)


async def test_a_device_token_moves_to_the_user_who_registers_it_last(world):
    ada, bob = world.directory.add(), world.directory.add()
    await world.settings.add_device(ada.id, "fcm", "shared")
    device = await world.settings.add_device(bob.id, "fcm", "shared")
    assert device.platform is PushPlatform.FCM
    assert await world.settings.devices(ada.id) == ()
    assert await world.settings.devices(bob.id) == (device,)
    with pytest.raises(errors.NotFound):
        await world.settings.remove_device(ada.id, "shared")  # not hers any more
    await world.settings.remove_device(bob.id, "shared")
    assert await world.settings.devices(bob.id) == ()


async def test_the_inbox_pages_newest_first_and_marks_read(world):
    ada = world.directory.add()
    worker = world.worker(Channel.IN_APP, None)
    nids = []
    for _ in range(3):
        nids.append(await world.notify(ada.id, "in_app"))
        await worker.handle(world.messages(Channel.IN_APP)[-1])
    first, cursor, unread = await world.settings.inbox(ada.id, None, 2)
    assert ([i.id for i in first], unread) == (nids[::-1][:2], 3)
    rest, end, _ = await world.settings.inbox(ada.id, cursor, 2)
    assert ([i.id for i in rest], end) == ([nids[0]], None)
    assert await world.settings.mark_read(ada.id, nids[0]) == 1
    assert await world.settings.mark_read(ada.id, nids[0]) == 0  # read already
    assert await world.settings.unread(ada.id) == 2
    with pytest.raises(errors.NotFound):
        await world.settings.mark_read(ada.id, "no-such-item")
    assert await world.settings.mark_read(ada.id, None) == 2
    assert await world.settings.unread(ada.id) == 0
