"""A user mentioned in chat hears about it through notifications, by chat's `UserMentioned` on
topic `chat`, on SQLite + the in-process bus and on PostgreSQL + RabbitMQ, with a real SMTP
receiver: offline, in-app, by push and by email (each where they can be reached), naming the
author and the room with the excerpt; online, in-app only; a redelivered event notifies once;
a mention of a user who does not exist sends nothing and is dead-lettered, and the group goes
on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from support.app import running_app, settings_for
from support.notifications import eventually, user
from support.smtp_receiver import SmtpReceiver
from townhall.chat import events as chat
from townhall.notifications.adapters.tables import notifications
from townhall.platform.ids import new_id
from townhall.platform.messaging import Envelope

pytestmark = pytest.mark.timeout(120)

MODULES = ["identity", "notifications"]
GROUP = "notifications.chat"
ROOM_ID = "0193a2b4-0000-7000-8000-00000000c0de"


@pytest.fixture
def smtp():
    with SmtpReceiver() as receiver:
        yield receiver


@asynccontextmanager
async def app(stack, smtp: SmtpReceiver, tmp_path) -> AsyncIterator[tuple[Any, Any]]:
    database_url, bus = stack
    settings = settings_for(database_url, tmp_path, bus_url=bus, smtp_url=smtp.url, admins="boss")
    async with running_app(settings, MODULES) as (client, runtime):
        yield client, runtime


def mention(mentioned_id: str, excerpt: str, *, online: bool) -> chat.UserMentioned:
    return chat.UserMentioned(
        message_id=str(new_id()),
        room_id=ROOM_ID,
        room_name="General",
        seq=7,
        author_id=str(new_id()),
        author_username="bob",
        mentioned_id=mentioned_id,
        excerpt=excerpt,
        online=online,
    )


async def publish(runtime, event: chat.UserMentioned) -> Envelope:
    """Publish `event` on topic `chat` as chat's outbox does (keyed by the mentioned user)."""
    envelope = Envelope(type=event.type, key=event.mentioned_id, payload=event.to_payload())
    await runtime.platform.bus.publish(chat.TOPIC, envelope)
    return envelope


async def inbox(client, auth) -> list[dict]:
    """The user's in-app items about chat, newest first."""
    answer = await client.get("/api/v1/me/inbox", headers=auth)
    assert answer.status_code == 200, answer.text
    return [i for i in answer.json()["items"] if i["category"] == "chat"]


async def told(client, auth, excerpt: str) -> dict:
    """Wait for the in-app item that shows `excerpt`."""

    async def arrived():
        return next((i for i in await inbox(client, auth) if excerpt in i["body"]), None)

    return await eventually(arrived, within=30)


async def channels(client, auth, notification_id: str) -> dict[str, dict]:
    answer = await client.get(f"/api/v1/notifications/{notification_id}", headers=auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["channels"])


async def settled(client, auth, notification_id: str) -> dict[str, dict]:
    """Wait until every channel of the notification is final; its channels."""

    async def done():
        found = await channels(client, auth, notification_id)
        final = all(c["status"] in ("SENT", "SKIPPED", "FAILED") for c in found.values())
        return found if final else None

    return await eventually(done, within=30)


async def emailed(smtp: SmtpReceiver, notification_id: str) -> bytes:
    async def arrived():
        return smtp.receiver.by_notification()[notification_id]

    await eventually(arrived, within=30)
    [mail] = [m for m in smtp.receiver.messages if notification_id.encode() in m]
    return mail


async def chat_notices(database, recipient: str) -> list[str]:
    """The templates of the notifications recorded for `recipient` about chat."""
    query = sa.select(notifications.c.template).where(
        notifications.c.recipient == recipient, notifications.c.category == "chat"
    )
    async with database.connect() as conn:
        return sorted(row.template for row in (await conn.execute(query)).all())


async def test_an_offline_user_is_told_in_app_by_push_and_by_email_and_an_online_one_in_app_only(
    stack, smtp, tmp_path
):
    async with app(stack, smtp, tmp_path) as (client, runtime):
        ada_id, ada = await user(client, email="ada@example.org")
        added = await client.post(
            "/api/v1/me/devices", headers=ada, json={"platform": "fcm", "token": "ada-phone"}
        )
        assert added.status_code == 201, added.text

        # Offline: in-app, push and email, naming the author and the room, with the excerpt
        # as written (a text message, nothing escaped).
        away = "@ada can you check <this> & that before 5?"
        await publish(runtime, mention(ada_id, away, online=False))
        item = await told(client, ada, away)
        assert item["subject"] == "bob mentioned you in General"
        assert item["body"] == f"bob in General: {away}"
        delivered = await settled(client, ada, item["id"])
        assert {name: c["status"] for name, c in delivered.items()} == {
            "in_app": "SENT",
            "push": "SENT",
            "email": "SENT",
        }
        mail = await emailed(smtp, item["id"])
        assert b"To: ada@example.org" in mail
        assert b"Subject: bob mentioned you in General" in mail
        assert away.encode() in mail
        _, boss = await user(client, "boss")
        outbox = (await client.get("/api/v1/dev/outbox", headers=boss)).json()
        [push] = [p for p in outbox["push"] if p["notification_id"] == item["id"]]
        assert (push["token"], push["title"], push["body"]) == (
            "ada-phone",
            "bob mentioned you in General",
            away,
        )

        # Online: in-app only; no email and no push is even asked for.
        here = "@ada lunch?"
        await publish(runtime, mention(ada_id, here, online=True))
        item_online = await told(client, ada, here)
        assert item_online["subject"] == "bob mentioned you in General"
        assert {
            name: c["status"] for name, c in (await settled(client, ada, item_online["id"])).items()
        } == {"in_app": "SENT"}

        # Offline, but with neither an email address nor a device: in-app; email and push
        # are skipped, not sent.
        carl_id, carl = await user(client)
        await publish(runtime, mention(carl_id, "@carl ping", online=False))
        item_carl = await told(client, carl, "@carl ping")
        skipped = await settled(client, carl, item_carl["id"])
        assert skipped["in_app"]["status"] == "SENT"
        for channel in ("email", "push"):
            assert skipped[channel]["status"] == "SKIPPED"
            assert skipped[channel]["skip_reason"] == "no_contact_point"

        counts = smtp.receiver.by_notification()
        assert [counts[i] for i in (item["id"], item_online["id"], item_carl["id"])] == [1, 0, 0]
        assert await chat_notices(runtime.platform.database, ada_id) == ["chat_mention"] * 2


async def test_a_redelivered_mention_notifies_once(stack, smtp, tmp_path):
    async with app(stack, smtp, tmp_path) as (client, runtime):
        ada_id, ada = await user(client, email="ada@example.org")
        envelope = await publish(runtime, mention(ada_id, "@ada once", online=False))
        item = await told(client, ada, "@ada once")
        await emailed(smtp, item["id"])

        # The event again, in the group's own handler: as redelivered (the same envelope) and
        # as republished (a copy with a new id). A handler records what it asks for before it
        # returns, so this is read at once.
        [spec] = [c for c in runtime.consumers if (c.topic, c.group) == (chat.TOPIC, GROUP)]
        handler = spec.handler_factory()
        await handler(envelope)
        await handler(Envelope(type=envelope.type, key=envelope.key, payload=envelope.payload))
        assert await chat_notices(runtime.platform.database, ada_id) == ["chat_mention"]
        assert [i["id"] for i in await inbox(client, ada)] == [item["id"]]
        assert smtp.receiver.by_notification()[item["id"]] == 1


async def test_a_mention_of_an_unknown_user_sends_nothing_and_the_group_goes_on(
    stack, smtp, tmp_path
):
    async with app(stack, smtp, tmp_path) as (client, runtime):
        bus, database = runtime.platform.bus, runtime.platform.database
        nobody = str(new_id())
        envelope = await publish(runtime, mention(nobody, "@ghost hello", online=False))

        # As for an order notice to an unknown buyer: the handler raises, the bus retries,
        # then dead-letters the event, which an operator can list and replay.
        letters = await eventually(lambda: bus.dead_letters(chat.TOPIC, GROUP), within=30)
        assert [letter.envelope.id for letter in letters] == [envelope.id]
        assert f"no user {nobody}" in letters[0].error
        assert await chat_notices(database, nobody) == []

        # The group still handles what comes next.
        ada_id, ada = await user(client, email="ada@example.org")
        await publish(runtime, mention(ada_id, "@ada still here", online=False))
        item = await told(client, ada, "@ada still here")
        await emailed(smtp, item["id"])
        assert smtp.receiver.by_notification()[item["id"]] == 1
