"""The notifications domain: the delivery decision, delivery lifecycle and overall status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time

import pytest

from townhall.notifications.domain import (
    Attempt,
    CannotMuteTransactional,
    Channel,
    ContactPoints,
    Content,
    Delivered,
    DeliverNow,
    Delivery,
    DeliveryStatus,
    DeviceToken,
    EmailMessage,
    Hold,
    InvalidNotification,
    InvalidTransition,
    Notification,
    Permanent,
    Preferences,
    PushMessage,
    PushPlatform,
    QuietHours,
    Skip,
    SkipReason,
    SmsMessage,
    Transient,
    UnknownChannel,
    UnknownTimeZone,
    compose_messages,
    decide,
    message_id_for,
    parse_channels,
)
from townhall.platform.clock import FrozenClock

NIGHT = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 23:00 in UTC, inside 22:00-07:00
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EVERYWHERE = ContactPoints(
    email="ada@example.org",
    phone="+15005550006",
    devices=(DeviceToken(PushPlatform.FCM, "token-1"),),
)
QUIET = Preferences(quiet_hours=QuietHours(time(22), time(7), "UTC"))


def test_deliver_now_when_reachable_not_muted_and_not_quiet() -> None:
    for channel in Channel:
        assert decide(channel, "social", Preferences(), EVERYWHERE, NOON) == DeliverNow()


def test_opted_out_channel_is_skipped_for_that_category_only() -> None:
    prefs = Preferences().opt_out("social", Channel.EMAIL)
    assert decide(Channel.EMAIL, "social", prefs, EVERYWHERE, NOON) == Skip(SkipReason.OPTED_OUT)
    assert decide(Channel.EMAIL, "events", prefs, EVERYWHERE, NOON) == DeliverNow()
    assert decide(Channel.SMS, "social", prefs, EVERYWHERE, NOON) == DeliverNow()
    assert decide(Channel.EMAIL, "social", prefs.opt_in("social", Channel.EMAIL), EVERYWHERE, NOON)
    assert (
        decide(Channel.EMAIL, "social", prefs.opt_in("social", Channel.EMAIL), EVERYWHERE, NOON)
        == DeliverNow()
    )


def test_opting_out_of_every_category_on_a_channel_spares_transactional_ones() -> None:
    prefs = Preferences().opt_out("*", Channel.SMS)
    assert decide(Channel.SMS, "social", prefs, EVERYWHERE, NOON) == Skip(SkipReason.OPTED_OUT)
    assert decide(Channel.SMS, "security", prefs, EVERYWHERE, NOON) == DeliverNow()


def test_security_category_cannot_be_muted() -> None:
    with pytest.raises(CannotMuteTransactional) as caught:
        Preferences().opt_out("security", Channel.EMAIL)
    assert caught.value.category == "security"
    # not even by a hand-built preference record
    forced = Preferences(opted_out=frozenset({("security", Channel.EMAIL)}))
    assert decide(Channel.EMAIL, "security", forced, EVERYWHERE, NOON) == DeliverNow()


def test_missing_contact_point_is_skipped_with_that_reason() -> None:
    nobody = ContactPoints()
    for channel in (Channel.EMAIL, Channel.SMS, Channel.PUSH):
        assert decide(channel, "social", Preferences(), nobody, NOON) == Skip(
            SkipReason.NO_CONTACT_POINT
        )
    assert decide(Channel.IN_APP, "social", Preferences(), nobody, NOON) == DeliverNow()


def test_opt_out_is_reported_before_a_missing_contact_point() -> None:
    prefs = Preferences().opt_out("social", Channel.SMS)
    assert decide(Channel.SMS, "social", prefs, ContactPoints(), NOON) == Skip(SkipReason.OPTED_OUT)


def test_quiet_hours_hold_until_they_end_but_never_hold_in_app_or_security() -> None:
    morning = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    assert decide(Channel.EMAIL, "social", QUIET, EVERYWHERE, NIGHT) == Hold(morning)
    assert decide(Channel.PUSH, "social", QUIET, EVERYWHERE, NIGHT) == Hold(morning)
    assert decide(Channel.IN_APP, "social", QUIET, EVERYWHERE, NIGHT) == DeliverNow()
    assert decide(Channel.SMS, "security", QUIET, EVERYWHERE, NIGHT) == DeliverNow()
    assert decide(Channel.EMAIL, "social", QUIET, EVERYWHERE, NOON) == DeliverNow()


def test_unknown_time_zone_is_refused_when_quiet_hours_are_set() -> None:
    with pytest.raises(UnknownTimeZone):
        QuietHours(time(22), time(7), "Mars/Olympus_Mons")


def test_channels_are_parsed_in_order_without_repeats_and_unknown_ones_are_named() -> None:
    assert parse_channels(["sms", "email", "sms"]) == (Channel.SMS, Channel.EMAIL)
    with pytest.raises(UnknownChannel) as caught:
        parse_channels(["email", "pigeon"])
    assert caught.value.name == "pigeon" and "pigeon" in str(caught.value)
    with pytest.raises(InvalidNotification):
        parse_channels([])


def test_content_is_a_template_or_a_body() -> None:
    with pytest.raises(InvalidNotification):
        Content()
    with pytest.raises(InvalidNotification):
        Content(template="welcome", body="hi")
    assert Content(subject="Hi", body="there").template is None


def make_notification(*channels: Channel) -> Notification:
    ids = iter([uuid.UUID(int=7)])
    return Notification.request(
        recipient=uuid.UUID(int=1),
        channels=channels,
        category="social",
        content=Content(template="welcome", data={"name": "Ada"}),
        clock=FrozenClock(NOON),
        make_id=lambda: next(ids),
    )


def test_a_request_makes_one_pending_delivery_per_channel_with_id_and_time_injected() -> None:
    notification = make_notification(Channel.EMAIL, Channel.IN_APP)
    assert notification.id == uuid.UUID(int=7)
    assert notification.created_at == NOON
    assert list(notification.deliveries) == [Channel.EMAIL, Channel.IN_APP]
    assert all(d.notification_id == notification.id for d in notification.deliveries.values())
    assert notification.status is DeliveryStatus.PENDING


def test_delivery_records_attempts_and_a_sent_delivery_is_never_sent_again() -> None:
    delivery = Delivery(uuid.UUID(int=7), Channel.EMAIL)
    delivery.start_sending()
    delivery.record(NOON, "smtp", Transient("451 busy", retry_after=30), final=False)
    assert delivery.status is DeliveryStatus.PENDING and delivery.last_error == "451 busy"
    delivery.start_sending()
    delivery.record(NOON, "smtp", Delivered("<id@x>", "250 ok"), final=False)
    assert delivery.status is DeliveryStatus.SENT and delivery.provider_id == "<id@x>"
    assert not delivery.should_send
    assert [(a.answer, a.error) for a in delivery.attempts] == [
        ("451 busy", "451 busy"),
        ("250 ok", None),
    ]
    with pytest.raises(InvalidTransition):
        delivery.start_sending()


def test_permanent_outcome_fails_at_once_and_exhausted_transient_fails_too() -> None:
    permanent = Delivery(uuid.UUID(int=7), Channel.PUSH)
    permanent.start_sending()
    permanent.record(NOON, "fcm", Permanent("UNREGISTERED", token_dead=True), final=False)
    assert permanent.status is DeliveryStatus.FAILED
    exhausted = Delivery(uuid.UUID(int=7), Channel.SMS)
    exhausted.start_sending()
    exhausted.record(NOON, "twilio", Transient("503"), final=True)
    assert exhausted.status is DeliveryStatus.FAILED and exhausted.last_error == "503"
    # a dead-letter replay sends a failed delivery again
    exhausted.start_sending()
    assert exhausted.status is DeliveryStatus.SENDING


def test_a_worker_may_take_over_a_delivery_left_sending_by_a_killed_one() -> None:
    delivery = Delivery(uuid.UUID(int=7), Channel.EMAIL)
    delivery.start_sending()
    delivery.start_sending()
    assert delivery.status is DeliveryStatus.SENDING


def test_skipped_delivery_keeps_its_reason_and_cannot_be_sent() -> None:
    delivery = Delivery(uuid.UUID(int=7), Channel.SMS)
    delivery.skip(SkipReason.NO_CONTACT_POINT)
    assert (delivery.status, delivery.skip_reason) == (
        DeliveryStatus.SKIPPED,
        SkipReason.NO_CONTACT_POINT,
    )
    assert not delivery.should_send
    with pytest.raises(InvalidTransition):
        delivery.start_sending()


def test_overall_status_follows_the_channels() -> None:
    notification = make_notification(Channel.EMAIL, Channel.SMS)
    email, sms = notification.deliveries.values()
    sms.skip(SkipReason.OPTED_OUT)
    assert notification.status is DeliveryStatus.PENDING
    email.start_sending()
    assert notification.status is DeliveryStatus.SENDING
    email.record(NOON, "smtp", Delivered("x"), final=False)
    assert notification.status is DeliveryStatus.SENT
    sms_only = make_notification(Channel.SMS)
    sms_only.deliveries[Channel.SMS].skip(SkipReason.OPTED_OUT)
    assert sms_only.status is DeliveryStatus.SKIPPED


def test_overall_status_is_failed_when_any_channel_failed() -> None:
    notification = make_notification(Channel.EMAIL, Channel.PUSH)
    email, push = notification.deliveries.values()
    for delivery in (email, push):
        delivery.start_sending()
    email.record(NOON, "smtp", Delivered("x"), final=False)
    push.record(NOON, "apns", Permanent("410 Unregistered", token_dead=True), final=False)
    assert notification.status is DeliveryStatus.FAILED


def test_message_id_is_deterministic_per_notification_and_channel() -> None:
    nid = uuid.UUID(int=42)
    assert message_id_for(nid, Channel.EMAIL, "t.test") == message_id_for(
        nid, Channel.EMAIL, "t.test"
    )
    assert message_id_for(nid, Channel.EMAIL, "t.test") != message_id_for(
        nid, Channel.SMS, "t.test"
    )
    assert message_id_for(nid, Channel.EMAIL, "t.test").startswith(f"<{nid}.email@")


def test_attempt_of_a_delivered_outcome_has_no_error() -> None:
    attempt = Attempt(NOON, "smtp", Delivered("<id>"))
    assert (attempt.answer, attempt.error) == ("<id>", None)


def test_composed_messages_go_to_the_contact_point_and_push_goes_to_every_device() -> None:
    nid = uuid.UUID(int=9)
    two_devices = ContactPoints(
        devices=(DeviceToken(PushPlatform.FCM, "a"), DeviceToken(PushPlatform.APNS, "b"))
    )
    assert compose_messages(nid, Channel.EMAIL, EVERYWHERE, "Hi", "text", "<p>text</p>") == (
        EmailMessage(nid, "ada@example.org", "Hi", "text", "<p>text</p>"),
    )
    assert compose_messages(nid, Channel.SMS, EVERYWHERE, None, "code") == (
        SmsMessage(nid, "+15005550006", "code"),
    )
    pushes = compose_messages(nid, Channel.PUSH, two_devices, "Hi", "there")
    assert [p.device.token for p in pushes if isinstance(p, PushMessage)] == ["a", "b"]
    assert compose_messages(nid, Channel.IN_APP, EVERYWHERE, "Hi", "there") == ()
    assert compose_messages(nid, Channel.EMAIL, ContactPoints(), "Hi", "there") == ()
