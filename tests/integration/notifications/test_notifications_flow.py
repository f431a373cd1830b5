"""Notifications end to end in one process: HTTP -> outbox -> bus -> channel worker -> a real
SMTP server; on SQLite + the in-process bus, and on PostgreSQL + RabbitMQ / Redis Streams."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from support.app import running_app, settings_for
from support.notifications import bus_url, eventually, status_of, user
from support.services import create_database, database_name, drop_database, require
from support.smtp_server import ScriptedServer
from townhall.notifications.adapters.directory import KNOWN_RECIPIENTS_TTL, DirectoryRecipients
from townhall.notifications.adapters.smtp import SmtpEmailSender
from townhall.notifications.adapters.sql import (
    SqlDeliveries,
    SqlDevices,
    SqlNotificationRequests,
)
from townhall.notifications.adapters.tables import deliveries, inbox
from townhall.notifications.domain import Channel, Delivered, Delivery, DeliveryStatus
from townhall.notifications.events import NotificationRequested
from townhall.notifications.messages import DeliveryRequested, topic_for
from townhall.notifications.service import (
    Accepted,
    DeliveryWorker,
    HeldReleaser,
    NotificationRequest,
    NotificationService,
    TransientFailure,
    UnknownRecipient,
)
from townhall.notifications.templates import TemplateRenderer
from townhall.platform.clock import FrozenClock
from townhall.platform.messaging import Retry
from townhall.platform.messaging.envelope import REPLAY_HEADER
from townhall.platform.outbox import outbox_messages

pytestmark = pytest.mark.timeout(90)

STACKS = {
    "sqlite+memory": ("sqlite", "memory"),
    "postgresql+rabbitmq": ("postgresql", "rabbitmq"),
    "postgresql+redis": ("postgresql", "redis"),
}


@pytest.fixture(params=list(STACKS))
async def stack(request, tmp_path):
    database, bus = STACKS[request.param]
    if bus == "rabbitmq":
        require("RabbitMQ", "127.0.0.1", 5672)
    if bus == "redis":
        require("Redis", "127.0.0.1", 6379)
    if database == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", bus_url(bus, "n")
        return
    name = database_name("n")
    url = await create_database(name)
    yield url, bus_url(bus, "n")
    await drop_database(name)


@pytest.fixture
async def smtp():
    server = ScriptedServer()
    port = await server.start()
    server.url = f"smtp://127.0.0.1:{port}"
    yield server
    await server.stop()


@pytest.fixture
async def app(stack, smtp, tmp_path):
    database_url, bus = stack
    settings = settings_for(
        database_url,
        tmp_path,
        bus_url=bus,
        smtp_url=smtp.url,
        admins="boss",
        notification_max_attempts=3,
        provider_cooldown=0.1,
    )
    async with running_app(settings) as (client, runtime):
        _, boss = await user(client, "boss")
        yield client, runtime, boss


async def quiet_all_day(client, auth) -> None:
    """Quiet hours covering the whole day but one minute, so "now" is inside them."""
    answer = await client.put(
        "/api/v1/me/notification-preferences",
        headers=auth,
        json={"quiet_hours": {"start": "00:00", "end": "23:59", "time_zone": "UTC"}},
    )
    assert answer.status_code == 200


def two_workers(runtime, channel: Channel, sender) -> list[DeliveryWorker]:
    """Two workers of `channel` beside the app's own, on its database and identity."""
    platform = runtime.platform
    return [
        DeliveryWorker(
            channel,
            SqlDeliveries(platform.database),
            SqlDevices(platform.database),
            DirectoryRecipients(platform.facades["identity"]),
            sender,
            platform.clock,
            max_attempts=3,
        )
        for _ in range(2)
    ]


async def notify(client, admin, body) -> str:
    """POST a notification as an administrator; its id."""
    answer = await client.post("/api/v1/notifications", headers=admin, json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def emails_to(smtp: ScriptedServer, address: str) -> list[bytes]:
    return [m for m in smtp.received if f"To: {address}".encode() in m]


async def welcomed(smtp: ScriptedServer, address: str) -> None:
    """Wait for the welcome email, so scripted replies apply to the next one."""

    async def arrived():
        return emails_to(smtp, address)

    await eventually(arrived)


def emails_for(smtp: ScriptedServer, nid: str) -> list[bytes]:
    """The emails of one notification (its id is in the Message-ID and a header)."""
    return [m for m in smtp.received if f"X-Townhall-Notification: {nid}".encode() in m]


async def test_a_request_is_accepted_at_once_and_one_email_arrives(app, smtp):
    client, _, boss = app
    uid, _ = await user(client, email="ada@example.org")
    answer = await client.post(
        "/api/v1/notifications",
        headers=boss,
        json={"recipient": uid, "channels": ["email"], "subject": "Hi", "body": "Hello Ada"},
    )
    assert answer.status_code == 202
    assert answer.json()["status"] == "PENDING"
    nid = answer.json()["id"]

    async def sent():
        state = await status_of(client, boss, nid)
        return state if state["status"] == "SENT" else None

    state = await eventually(sent)
    email = state["channels"]["email"]
    assert email["provider_id"]
    assert [a["outcome"] for a in email["attempts"]] == ["delivered"]
    mails = emails_for(smtp, nid)
    assert len(mails) == 1
    assert b"Hello Ada" in mails[0]
    assert f"Message-ID: <{nid}.email@".encode() in mails[0]


async def test_registration_sends_one_welcome_email_and_an_inbox_item(app, smtp):
    client, _, _ = app
    _, auth = await user(client, "grace", email="grace@example.org")
    await eventually(lambda: asyncio.sleep(0, emails_to(smtp, "grace@example.org")))
    inbox = await eventually(
        lambda: _items(client, auth),
    )
    assert len(inbox) == 1
    assert inbox[0]["category"] == "account"
    assert "grace" in inbox[0]["subject"] + inbox[0]["body"]
    assert b"Hello grace" in emails_to(smtp, "grace@example.org")[0]
    await asyncio.sleep(0.3)  # a duplicate would have arrived by now
    assert len(emails_to(smtp, "grace@example.org")) == 1


async def _items(client, auth):
    answer = await client.get("/api/v1/me/inbox", headers=auth)
    return answer.json()["items"]


async def test_a_retried_request_with_the_same_key_is_stored_and_sent_once(app, smtp):
    client, _, boss = app
    uid, _ = await user(client, email="key@example.org")
    body = {"recipient": uid, "channels": ["email"], "subject": "Once", "body": "only once"}
    headers = {**boss, "Idempotency-Key": "k-123"}
    answers = await asyncio.gather(
        *[client.post("/api/v1/notifications", headers=headers, json=body) for _ in range(5)]
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    nid = answers[0].json()["id"]
    await eventually(lambda: _status_is(client, boss, nid, "SENT"))
    again = await client.post("/api/v1/notifications", headers=headers, json=body)
    assert again.json()["id"] == nid
    assert again.json()["status"] == "SENT"
    misuse = await client.post(
        "/api/v1/notifications", headers=headers, json={**body, "body": "something else"}
    )
    assert misuse.status_code == 422
    assert misuse.json()["type"].endswith("idempotency-key-reused")
    await asyncio.sleep(0.3)
    assert len(emails_for(smtp, nid)) == 1


async def _status_is(client, boss, nid, wanted):
    state = await status_of(client, boss, nid)
    return state if state["status"] == wanted else None


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"channels": ["pigeon"]}, "channels", 422),
        ({"recipient": "00000000-0000-7000-8000-000000000000"}, "recipient", 422),
        ({"recipient": "not-a-user-id"}, "recipient", 422),
        ({"template": "nope", "data": {}, "subject": None, "body": None}, "template", 422),
        ({"template": "welcome", "data": {}, "subject": None, "body": None}, "template", 422),
    ],
)
async def test_bad_requests_are_problems_naming_what_is_wrong(app, change, field, status):
    client, _, boss = app
    uid, _ = await user(client, email="bad@example.org")
    body = {"recipient": uid, "channels": ["email"], "subject": "s", "body": "b", **change}
    body = {k: v for k, v in body.items() if v is not None}
    answer = await client.post("/api/v1/notifications", headers=boss, json=body)
    assert answer.status_code == status, answer.text
    problem = answer.json()
    assert field in [e["field"] for e in problem.get("errors", [])] or field in problem["detail"]


async def test_only_administrators_may_post_notifications(app):
    client, _, _ = app
    uid, auth = await user(client, email="plain@example.org")
    answer = await client.post(
        "/api/v1/notifications",
        headers=auth,
        json={"recipient": uid, "channels": ["email"], "subject": "s", "body": "b"},
    )
    assert answer.status_code == 403


async def test_a_permanent_refusal_fails_at_once_without_retrying(app, smtp):
    client, _, boss = app
    uid, _ = await user(client, email="gone@example.org")
    await welcomed(smtp, "gone@example.org")
    smtp.replies = ["550 5.1.1 no such mailbox"]
    nid = await notify(
        client, boss, {"recipient": uid, "channels": ["email"], "subject": "s", "body": "b"}
    )
    state = await eventually(lambda: _status_is(client, boss, nid, "FAILED"))
    attempts = state["channels"]["email"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["permanent"]
    assert "550" in state["channels"]["email"]["last_error"]


async def test_transient_failures_retry_then_dead_letter_and_replay_sends(app, smtp):
    client, runtime, boss = app
    uid, _ = await user(client, email="flaky@example.org")
    await welcomed(smtp, "flaky@example.org")
    smtp.replies = ["451 4.3.0 try later"] * 3  # every one of the 3 attempts
    nid = await notify(
        client, boss, {"recipient": uid, "channels": ["email"], "subject": "s", "body": "b"}
    )
    state = await eventually(lambda: _status_is(client, boss, nid, "FAILED"))
    assert [a["outcome"] for a in state["channels"]["email"]["attempts"]] == ["transient"] * 3
    bus = runtime.platform.bus
    letters = await eventually(
        lambda: bus.dead_letters("notifications.email", "notifications.email")
    )
    assert [str(letter.envelope.payload["notification_id"]) for letter in letters] == [nid]
    assert letters[0].attempts == 3
    # The provider recovers; replaying the dead letter sends it, and the status follows.
    assert await bus.replay("notifications.email", "notifications.email") == 1
    state = await eventually(lambda: _status_is(client, boss, nid, "SENT"))
    assert len(emails_for(smtp, nid)) == 1


async def test_opt_out_skips_and_security_cannot_be_muted(app, smtp):
    client, _, boss = app
    uid, auth = await user(client, email="quiet@example.org")
    put = await client.put(
        "/api/v1/me/notification-preferences",
        headers=auth,
        json={"opted_out": [{"category": "news", "channel": "email"}]},
    )
    assert put.status_code == 200
    assert put.json()["opted_out"] == [{"category": "news", "channel": "email"}]
    nid = await notify(
        client,
        boss,
        {
            "recipient": uid,
            "channels": ["email", "sms"],
            "category": "news",
            "subject": "s",
            "body": "b",
        },
    )
    state = await eventually(lambda: _status_is(client, boss, nid, "SKIPPED"))
    assert state["channels"]["email"]["skip_reason"] == "opted_out"
    assert state["channels"]["sms"]["skip_reason"] == "no_contact_point"
    muted = await client.put(
        "/api/v1/me/notification-preferences",
        headers=auth,
        json={"opted_out": [{"category": "security", "channel": "email"}]},
    )
    assert muted.status_code == 422


async def test_quiet_hours_hold_email_but_not_in_app(app, smtp):
    client, _, boss = app
    uid, auth = await user(client, email="night@example.org")
    await quiet_all_day(client, auth)
    nid = await notify(
        client,
        boss,
        {"recipient": uid, "channels": ["email", "in_app"], "subject": "s", "body": "b"},
    )

    async def settled():
        state = await status_of(client, boss, nid)
        channels = state["channels"]
        if channels["in_app"]["status"] == "SENT" and channels["email"]["held_until"]:
            return state
        return None

    state = await eventually(settled)
    assert state["channels"]["email"]["status"] == "PENDING"
    assert emails_for(smtp, nid) == []


async def test_push_goes_to_each_device_and_devices_can_be_removed(app):
    client, _, boss = app
    uid, auth = await user(client)
    for token in ("device-token-1", "device-token-2"):
        added = await client.post(
            "/api/v1/me/devices", headers=auth, json={"platform": "fcm", "token": token}
        )
        assert added.status_code == 201
    listed = (await client.get("/api/v1/me/devices", headers=auth)).json()["items"]
    assert [d["token"] for d in listed] == ["device-token-1", "device-token-2"]
    nid = await notify(
        client, boss, {"recipient": uid, "channels": ["push"], "subject": "t", "body": "b"}
    )
    await eventually(lambda: _status_is(client, boss, nid, "SENT"))
    removed = await client.request(
        "DELETE", "/api/v1/me/devices", headers=auth, json={"token": "device-token-1"}
    )
    assert removed.status_code == 204
    listed = (await client.get("/api/v1/me/devices", headers=auth)).json()["items"]
    assert [d["token"] for d in listed] == ["device-token-2"]


async def test_inbox_pages_newest_first_and_tracks_unread(app):
    client, _, boss = app
    uid, auth = await user(client)
    await eventually(lambda: _items(client, auth))  # the welcome item comes first
    ids = []
    for n in range(5):
        ids.append(
            await notify(
                client, boss, {"recipient": uid, "channels": ["in_app"], "body": f"note {n}"}
            )
        )

    async def five():
        answer = (await client.get("/api/v1/me/inbox?limit=100", headers=auth)).json()
        return answer if len(answer["items"]) == 6 else None  # 5 + the welcome item

    await eventually(five)
    first = (await client.get("/api/v1/me/inbox?limit=2", headers=auth)).json()
    assert [i["body"] for i in first["items"]] == ["note 4", "note 3"]
    assert first["unread"] == 6
    second = (
        await client.get(f"/api/v1/me/inbox?limit=2&cursor={first['next_cursor']}", headers=auth)
    ).json()
    assert [i["body"] for i in second["items"]] == ["note 2", "note 1"]
    read = await client.post(f"/api/v1/me/inbox/{ids[4]}/read", headers=auth)
    assert read.status_code == 204
    unread = (await client.get("/api/v1/me/inbox/unread-count", headers=auth)).json()
    assert unread == {"unread": 5}
    assert (await client.post("/api/v1/me/inbox/read-all", headers=auth)).json() == {"marked": 5}
    missing = await client.post(f"/api/v1/me/inbox/{ids[0]}x/read", headers=auth)
    assert missing.status_code == 404


async def test_a_recipient_sees_their_notification_status_and_others_do_not(app):
    client, _, boss = app
    uid, auth = await user(client)
    _, stranger = await user(client)
    nid = await notify(client, boss, {"recipient": uid, "channels": ["in_app"], "body": "mine"})
    assert (await client.get(f"/api/v1/notifications/{nid}", headers=auth)).status_code == 200
    assert (await client.get(f"/api/v1/notifications/{nid}", headers=stranger)).status_code == 404


async def test_a_delivery_message_without_its_recipient_is_still_delivered(app, smtp):
    """Messages published before the recipient rode along name only the notification; the
    worker reads the recipient itself."""
    client, runtime, boss = app
    uid, _ = await user(client, email="old@example.org")
    nid = await notify(
        client, boss, {"recipient": uid, "channels": ["email"], "subject": "s", "body": "old"}
    )
    await eventually(lambda: _status_is(client, boss, nid, "SENT"))
    # As if the first message had been lost: the delivery is pending again.
    async with runtime.platform.database.transaction() as conn:
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.notification_id == nid)
            .values(status="PENDING", claimed_until=None)
        )
    envelope = DeliveryRequested(Channel.EMAIL, ((nid, None),)).envelope()
    assert "recipient" not in envelope.payload
    await runtime.platform.bus.publish(topic_for(Channel.EMAIL), envelope)
    await eventually(lambda: asyncio.sleep(0, len(emails_for(smtp, nid)) == 2 or None))
    assert all(b"To: old@example.org" in mail for mail in emails_for(smtp, nid))


async def test_a_send_outcome_is_recorded_only_by_the_worker_whose_claim_still_holds(app):
    """Two workers sent one delivery (the first one's claim ran out and a second claimed it),
    and their outcomes arrive in one batch: only the outcome of the claim the delivery is
    still at is written; the stale one writes nothing, not even its attempt."""
    client, runtime, boss = app
    uid, _ = await user(client)  # no email address: the in-process worker skips it
    nid = await notify(
        client, boss, {"recipient": uid, "channels": ["email"], "subject": "s", "body": "b"}
    )
    await eventually(lambda: _status_is(client, boss, nid, "SKIPPED"))
    store = SqlDeliveries(runtime.platform.database)
    skipped = await store.to_send(Channel.EMAIL, nid)
    assert skipped is not None
    mine = Delivery(uuid.UUID(nid), Channel.EMAIL, status=DeliveryStatus.SENDING)
    now = datetime.now(UTC)
    mine.record(now, "smtp", Delivered("first"), final=False)
    attempt = mine.attempts[0]
    assert not await store.finish(mine, skipped.version, attempt, now)
    state = (await status_of(client, boss, nid))["channels"]["email"]
    assert (state["status"], state["attempts"]) == ("SKIPPED", [])

    async with runtime.platform.database.transaction() as conn:  # another worker claims it
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.notification_id == nid)
            .values(status="SENDING", skip_reason=None, version=deliveries.c.version + 1)
        )
    stale, current = skipped.version, skipped.version + 1
    # Both outcomes at once: they go as one batch (the calls made while none is under way).
    written = await asyncio.gather(
        store.finish(mine, stale, attempt, now), store.finish(mine, current, attempt, now)
    )
    assert written == [False, True]
    # now SENT, at the next version
    assert not await store.finish(mine, current, attempt, now)
    state = (await status_of(client, boss, nid))["channels"]["email"]
    assert [a["outcome"] for a in state["attempts"]] == ["delivered"]
    assert (state["status"], state["provider_id"]) == ("SENT", "first")
    assert [a["outcome"] for a in state["attempts"]] == ["delivered"]


async def test_copies_of_one_delivery_handled_at_once_send_it_once(app, smtp):
    """Copies of one delivery message reach two workers at the same moment, two of them the
    same worker (whose reads and claims then share a batch): all read the delivery PENDING,
    only one claim is written (the others find the version moved on, read again and see the
    claim), so exactly one email goes out per round."""
    client, runtime, boss = app
    uid, _ = await user(client, email="twice@example.org")
    nid = await notify(
        client, boss, {"recipient": uid, "channels": ["email"], "subject": "s", "body": "b"}
    )
    await eventually(lambda: _status_is(client, boss, nid, "SENT"))
    platform = runtime.platform
    sender = SmtpEmailSender(smtp.url, "townhall@example.org")
    workers = two_workers(runtime, Channel.EMAIL, sender)
    envelope = DeliveryRequested(Channel.EMAIL, ((nid, uid),)).envelope()
    try:
        for round_ in range(1, 6):
            async with platform.database.transaction() as conn:  # as after a transient failure
                await conn.execute(
                    deliveries.update()
                    .where(deliveries.c.notification_id == nid)
                    .values(status="PENDING", version=deliveries.c.version + 1)
                )
            results = await asyncio.gather(
                *(worker.handle(envelope) for worker in [*workers, workers[0]]),
                return_exceptions=True,
            )
            assert len(emails_for(smtp, nid)) == 1 + round_
            losers = [r for r in results if r is not None]
            assert all(isinstance(r, Retry) for r in losers), results
    finally:
        await sender.aclose()
    state = (await status_of(client, boss, nid))["channels"]["email"]
    assert state["status"] == "SENT"
    assert len(state["attempts"]) == 6  # the first send and one per round, no more


async def test_requests_made_at_once_are_each_answered_and_one_the_database_refuses_fails_alone(
    app, smtp
):
    """Requests arriving together are recorded together (one transaction). One that the
    database refuses (here: data that cannot be stored as JSON) fails that transaction; then
    each is recorded on its own, so only the bad one fails and none of the others is lost.
    Identical requests with one Idempotency-Key among them still make one notification."""
    client, runtime, _ = app
    uid, _ = await user(client, email="many@example.org")
    facade = runtime.platform.facades["notifications"]

    def request(subject: str, **extra) -> NotificationRequested:
        return NotificationRequested(
            recipient=uid, channels=["email"], subject=subject, body="b", **extra
        )

    requests = [request(f"n{i}") for i in range(6)]
    requests.insert(3, request("bad", data={"unstorable": object()}))
    requests += [request("keyed", idempotency_key="same") for _ in range(3)]
    outcomes = await asyncio.gather(
        *(facade.notify(r, requested_by="test") for r in requests), return_exceptions=True
    )
    assert isinstance(outcomes[3], Exception), outcomes[3]
    distinct, keyed = outcomes[:3] + outcomes[4:7], outcomes[7:]
    assert all(isinstance(o, Accepted) and o.created for o in distinct), distinct
    assert len({o.id for o in keyed}) == 1
    assert sorted(o.created for o in keyed) == [False, False, True]
    expected = {o.id for o in distinct} | {keyed[0].id}
    assert len(expected) == 7

    async def all_sent():
        return all(len(emails_for(smtp, nid)) >= 1 for nid in expected)

    await eventually(all_sent)
    await asyncio.sleep(0.3)
    assert all(len(emails_for(smtp, nid)) == 1 for nid in expected)
    assert not [m for m in smtp.received if b"Subject: bad" in m]


async def test_the_devices_of_many_users_are_read_at_once_each_under_its_owner(app):
    """A batch of push deliveries reads its recipients' devices in one query; each user gets
    only their own tokens, oldest first, and a user without any is absent."""
    client, runtime, _ = app
    owners = {}
    for name, tokens in (("ann", ["ann-token-1", "ann-token-2"]), ("bob", ["bob-token-1"])):
        uid, auth = await user(client, name)
        owners[uid] = tokens
        for token in tokens:
            added = await client.post(
                "/api/v1/me/devices", headers=auth, json={"platform": "apns", "token": token}
            )
            assert added.status_code == 201
    nobody, _ = await user(client, "cid")
    found = await SqlDevices(runtime.platform.database).of_users([*owners, nobody])
    assert {uid: [d.token for d in tokens] for uid, tokens in found.items()} == owners


async def test_a_held_delivery_is_released_once_its_hold_is_over_and_sent_once(app, smtp):
    """The releaser finds held deliveries whose hold ended, ends the hold and puts them back
    on the bus, recipient included; the email then goes out once."""
    client, runtime, boss = app
    uid, auth = await user(client, email="later@example.org")
    await quiet_all_day(client, auth)
    nid = await notify(
        client, boss, {"recipient": uid, "channels": ["email"], "subject": "s", "body": "b"}
    )

    async def held():
        return (await status_of(client, boss, nid))["channels"]["email"]["held_until"]

    await eventually(held)
    answer = await client.put("/api/v1/me/notification-preferences", headers=auth, json={})
    assert answer.status_code == 200
    database = runtime.platform.database
    async with database.transaction() as conn:  # as if the quiet hours were over
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.notification_id == nid)
            .values(held_until=datetime.now(UTC) - timedelta(minutes=1))
        )
    releaser = HeldReleaser(SqlDeliveries(database), runtime.platform.clock)
    assert await releaser.release_due() == 1
    assert await releaser.release_due() == 0  # released once
    async with database.connect() as conn:
        bodies = (
            await conn.execute(
                sa.select(outbox_messages.c.body).where(outbox_messages.c.key == nid)
            )
        ).scalars()
        released = [json.loads(b)["payload"] for b in bodies]
    assert {"notification_id": nid, "channel": "email", "recipient": uid} in released
    await eventually(lambda: _status_is(client, boss, nid, "SENT"))
    await asyncio.sleep(0.3)
    assert len(emails_for(smtp, nid)) == 1


async def test_copies_of_one_in_app_delivery_handled_at_once_make_one_inbox_item(app):
    """The inbox row is the in-app delivery: copies handled at once by two workers write it
    once (the losers' version-checked UPDATE finds it SENT already) and none of them fails."""
    client, runtime, boss = app
    uid, auth = await user(client)
    nid = await notify(client, boss, {"recipient": uid, "channels": ["in_app"], "body": "hi"})
    await eventually(lambda: _status_is(client, boss, nid, "SENT"))
    platform = runtime.platform
    workers = two_workers(runtime, Channel.IN_APP, None)
    async with platform.database.transaction() as conn:  # as if never delivered
        await conn.execute(inbox.delete().where(inbox.c.id == nid))
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.notification_id == nid)
            .values(status="PENDING", version=deliveries.c.version + 1)
        )
    envelope = DeliveryRequested(Channel.IN_APP, ((nid, uid),)).envelope()
    results = await asyncio.gather(*(worker.handle(envelope) for worker in [*workers, workers[0]]))
    assert results == [None, None, None]
    items = (await client.get("/api/v1/me/inbox", headers=auth)).json()["items"]
    assert [item["id"] for item in items].count(nid) == 1  # beside the welcome item
    assert (await status_of(client, boss, nid))["channels"]["in_app"]["status"] == "SENT"


async def email_outbox_payloads(database) -> list[dict]:
    async with database.connect() as conn:
        bodies = (
            await conn.execute(
                sa.select(outbox_messages.c.body)
                .where(outbox_messages.c.topic == "notifications.email")
                .order_by(outbox_messages.c.position)
            )
        ).scalars()
        return [json.loads(body)["payload"] for body in bodies]


async def test_requests_committed_together_go_to_the_workers_as_one_message(app, smtp):
    """The notifications of one group commit travel as one bus message per channel, and each
    is still sent exactly once."""
    client, runtime, boss = app
    users = [(await user(client, email=f"many{i}@example.org"))[0] for i in range(4)]
    recipients = [users[i % len(users)] for i in range(20)]
    before = len(await email_outbox_payloads(runtime.platform.database))
    nids = await asyncio.gather(
        *(
            notify(client, boss, {"recipient": uid, "channels": ["email"], "body": f"n{i}"})
            for i, uid in enumerate(recipients)
        )
    )
    for nid in nids:
        await eventually(lambda nid=nid: _status_is(client, boss, nid, "SENT"))
    # Welcome emails of the users above may be among them; only this test's count.
    ours = set(nids)
    payloads = [
        payload
        for payload in (await email_outbox_payloads(runtime.platform.database))[before:]
        if any(nid in ours for nid, _ in DeliveryRequested.from_payload(payload).asked)
    ]
    asked = [
        pair
        for p in payloads
        for pair in DeliveryRequested.from_payload(p).asked
        if pair[0] in ours
    ]
    assert sorted(nid for nid, _ in asked) == sorted(nids)  # each asked for once
    assert dict(asked) == dict(zip(nids, recipients, strict=True))
    assert len(payloads) < len(nids)  # fewer messages than notifications
    await asyncio.sleep(0.3)
    assert all(len(emails_for(smtp, nid)) == 1 for nid in nids)


async def test_a_message_for_many_retries_only_what_failed_and_replay_resends_the_refused(
    app, smtp
):
    """One message asks for three deliveries: one is sent, one gets a transient answer, one
    a permanent one. The message fails as a whole with the transient failure; its retry sends
    only the one that failed transiently (neither the sent one nor the refused one goes out
    again); a replay of the message by an operator sends the refused one again."""
    client, runtime, boss = app
    people = {}
    for name in ("fine", "flaky", "gone"):
        uid, _ = await user(client, email=f"{name}@example.org")
        await welcomed(smtp, f"{name}@example.org")
        nid = await notify(
            client, boss, {"recipient": uid, "channels": ["email"], "subject": "s", "body": name}
        )
        await eventually(lambda nid=nid: _status_is(client, boss, nid, "SENT"))
        people[name] = (nid, uid)
    database = runtime.platform.database
    async with database.transaction() as conn:  # as if never sent
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.notification_id.in_([nid for nid, _ in people.values()]))
            .values(status="PENDING", version=deliveries.c.version + 1)
        )
    smtp.replies_to = {
        "flaky@example.org": ["451 4.3.0 try later"],
        "gone@example.org": ["550 5.1.1 no such mailbox"],
    }
    sender = SmtpEmailSender(smtp.url, "townhall@example.org")
    worker = two_workers(runtime, Channel.EMAIL, sender)[0]
    envelope = DeliveryRequested(Channel.EMAIL, tuple(people.values())).envelope()
    assert DeliveryRequested.from_payload(envelope.payload).asked == tuple(people.values())

    async def state(name: str) -> dict:
        return (await status_of(client, boss, people[name][0]))["channels"]["email"]

    def sent(name: str) -> int:
        return len(emails_for(smtp, people[name][0]))

    try:
        with pytest.raises(TransientFailure, match="1 of 3 deliveries failed"):
            await worker.handle(envelope.with_headers(attempt="1"))
        assert [(await state(n))["status"] for n in people] == ["SENT", "PENDING", "FAILED"]
        assert (sent("fine"), sent("flaky"), sent("gone")) == (2, 1, 1)

        await worker.handle(envelope.with_headers(attempt="2"))  # the retry
        assert [(await state(n))["status"] for n in people] == ["SENT", "SENT", "FAILED"]
        assert (sent("fine"), sent("flaky"), sent("gone")) == (2, 2, 1)
        gone = await state("gone")
        assert [a["outcome"] for a in gone["attempts"]] == ["delivered", "permanent"]

        replay = {REPLAY_HEADER: "notifications.email", "attempt": "1"}
        await worker.handle(envelope.with_headers(**replay))
        assert [(await state(n))["status"] for n in people] == ["SENT", "SENT", "SENT"]
        assert (sent("fine"), sent("flaky"), sent("gone")) == (2, 2, 2)
    finally:
        await sender.aclose()


class CountingDirectory:
    """Identity's facade, counting the users asked for."""

    def __init__(self, directory) -> None:
        self._directory = directory
        self.asked: list[str] = []

    async def contact(self, user_id):
        self.asked.append(user_id)
        return await self._directory.contact(user_id)

    async def contacts(self, user_ids):
        self.asked += user_ids
        return await self._directory.contacts(user_ids)


async def test_a_recipient_is_looked_up_once_then_known_until_the_entry_expires(app):
    client, runtime, _ = app
    platform = runtime.platform
    clock = FrozenClock(datetime.now(UTC))
    directory = CountingDirectory(platform.facades["identity"])
    service = NotificationService(
        SqlNotificationRequests(platform.database),
        DirectoryRecipients(directory, remember_with=clock),
        TemplateRenderer(),
        clock,
    )
    ada, auth = await user(client)

    async def welcome_subject() -> str:
        request = NotificationRequest(
            recipient=ada, channels=["in_app"], template="welcome", data={"name": "Ada"}
        )
        accepted = await service.request(request, requested_by="test")
        async with platform.database.connect() as conn:
            found = await conn.execute(
                sa.select(deliveries.c.subject).where(deliveries.c.notification_id == accepted.id)
            )
            return found.scalar_one()

    assert await welcome_subject() == "Welcome, Ada!"
    assert directory.asked == [ada]
    changed = await client.patch("/api/v1/me", headers=auth, json={"locale": "fr"})
    assert changed.status_code == 200, changed.text
    # Within its time the known recipient is used as it was: its locale may be stale.
    clock.advance(seconds=KNOWN_RECIPIENTS_TTL.total_seconds() - 1)
    assert await welcome_subject() == "Welcome, Ada!"
    assert directory.asked == [ada]
    clock.advance(seconds=1)
    assert await welcome_subject() == "Bienvenue, Ada !"
    assert directory.asked == [ada, ada]

    # An unknown recipient is not remembered: each request asks again.
    nobody = str(uuid.uuid4())
    for _ in range(2):
        with pytest.raises(UnknownRecipient):
            await service.request(
                NotificationRequest(recipient=nobody, channels=["email"], body="x"),
                requested_by="test",
            )
    assert directory.asked == [ada, ada, nobody, nobody]
