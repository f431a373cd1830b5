"""An author hears of a new follower, a like and a comment through notifications, by the feed's
`Followed`, `PostLiked` and `PostCommented` on topic `feed`, on SQLite + the in-process bus and
on PostgreSQL + RabbitMQ: one in-app notification each (no email, no push), to the followee or
the post's author, naming who did it by username; nobody is told of their own like or comment;
a redelivered or republished event notifies once; an event naming an actor who is not a user
sends nothing and is dead-lettered, and the group goes on.

The feed's events are published on the bus directly, as the feed's outbox would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from support.app import running_app, settings_for
from support.notifications import eventually, user
from support.smtp_receiver import SmtpReceiver
from townhall.feed import events as feed
from townhall.notifications.adapters.tables import notifications
from townhall.platform.ids import new_id
from townhall.platform.messaging import Envelope

pytestmark = pytest.mark.timeout(120)

MODULES = ["identity", "notifications"]
GROUP = "notifications.feed"


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


async def publish(runtime, event: Any, key: str) -> Envelope:
    envelope = Envelope(type=event.type, key=key, payload=event.to_payload())
    await runtime.platform.bus.publish(feed.TOPIC, envelope)
    return envelope


async def inbox(client, auth) -> list[dict]:
    """The user's in-app items about the feed, newest first."""
    answer = await client.get("/api/v1/me/inbox", headers=auth)
    assert answer.status_code == 200, answer.text
    return [i for i in answer.json()["items"] if i["category"] == "feed"]


async def told(client, auth, subject: str) -> dict:
    """Wait for the in-app item whose subject is `subject`."""

    async def arrived():
        return next((i for i in await inbox(client, auth) if i["subject"] == subject), None)

    return await eventually(arrived, within=30)


async def settled(client, auth, notification_id: str) -> dict[str, str]:
    """Wait until every channel of the notification is final; each channel's status."""

    async def done():
        answer = await client.get(f"/api/v1/notifications/{notification_id}", headers=auth)
        assert answer.status_code == 200, answer.text
        found = {name: c["status"] for name, c in answer.json()["channels"].items()}
        return found if all(s in ("SENT", "SKIPPED", "FAILED") for s in found.values()) else None

    return await eventually(done, within=30)


async def feed_notices(database, recipient: str) -> list[str]:
    """The templates of the notifications recorded for `recipient` about the feed."""
    query = sa.select(notifications.c.template).where(
        notifications.c.recipient == recipient, notifications.c.category == "feed"
    )
    async with database.connect() as conn:
        return sorted(row.template for row in (await conn.execute(query)).all())


async def test_a_follow_a_like_and_a_comment_each_tell_the_author_in_app_by_username(
    stack, smtp, tmp_path
):
    async with app(stack, smtp, tmp_path) as (client, runtime):
        ada_id, ada = await user(client, "ada", email="ada@example.org")
        bob_id, bob = await user(client, "bob", email="bob@example.org")
        post_id = str(new_id())

        await publish(runtime, feed.Followed(follower_id=bob_id, followee_id=ada_id), ada_id)
        followed = await told(client, ada, "bob followed you")
        assert followed["body"] == "bob followed you"

        liked_event = feed.PostLiked(post_id=post_id, author_id=ada_id, user_id=bob_id)
        await publish(runtime, liked_event, post_id)
        liked = await told(client, ada, "bob liked your post")
        assert liked["body"] == "bob liked your post"

        # The excerpt as written: in-app text is not HTML-escaped.
        excerpt = "Nice <b>shot</b> & the light!"
        commented_event = feed.PostCommented(
            post_id=post_id,
            author_id=ada_id,
            comment_id=str(new_id()),
            user_id=bob_id,
            excerpt=excerpt,
        )
        await publish(runtime, commented_event, post_id)
        commented = await told(client, ada, "bob commented on your post")
        assert commented["body"] == f"bob commented on your post: {excerpt}"

        # In-app only: no email and no push is even asked for, though ada has an address.
        for item in (followed, liked, commented):
            assert await settled(client, ada, item["id"]) == {"in_app": "SENT"}
        counts = smtp.receiver.by_notification()
        assert [counts[i["id"]] for i in (followed, liked, commented)] == [0, 0, 0]
        assert await feed_notices(runtime.platform.database, ada_id) == [
            "feed_commented",
            "feed_followed",
            "feed_liked",
        ]
        # The actor is told nothing.
        assert await inbox(client, bob) == []
        assert await feed_notices(runtime.platform.database, bob_id) == []


async def test_nobody_is_told_of_their_own_like_or_comment(stack, smtp, tmp_path):
    async with app(stack, smtp, tmp_path) as (client, runtime):
        ada_id, ada = await user(client, "ada")
        bob_id, _ = await user(client, "bob")
        post_id = str(new_id())
        await publish(
            runtime, feed.PostLiked(post_id=post_id, author_id=ada_id, user_id=ada_id), post_id
        )
        await publish(
            runtime,
            feed.PostCommented(
                post_id=post_id,
                author_id=ada_id,
                comment_id=str(new_id()),
                user_id=ada_id,
                excerpt="my own words",
            ),
            post_id,
        )
        # Then someone else's like, on the same key (so after the two above, in order): once
        # it is in, the two before it were handled and told nobody.
        await publish(
            runtime, feed.PostLiked(post_id=post_id, author_id=ada_id, user_id=bob_id), post_id
        )
        await told(client, ada, "bob liked your post")
        assert await feed_notices(runtime.platform.database, ada_id) == ["feed_liked"]
        assert [i["subject"] for i in await inbox(client, ada)] == ["bob liked your post"]


async def test_a_redelivered_or_republished_event_notifies_once(stack, smtp, tmp_path):
    async with app(stack, smtp, tmp_path) as (client, runtime):
        ada_id, ada = await user(client, "ada")
        bob_id, _ = await user(client, "bob")
        post_id = str(new_id())
        events = [
            (feed.Followed(follower_id=bob_id, followee_id=ada_id), "bob followed you"),
            (
                feed.PostLiked(post_id=post_id, author_id=ada_id, user_id=bob_id),
                "bob liked your post",
            ),
            (
                feed.PostCommented(
                    post_id=post_id,
                    author_id=ada_id,
                    comment_id=str(new_id()),
                    user_id=bob_id,
                    excerpt="once",
                ),
                "bob commented on your post",
            ),
        ]
        envelopes = []
        for event, subject in events:
            envelopes.append(await publish(runtime, event, ada_id))
            await told(client, ada, subject)
        first = sorted(i["id"] for i in await inbox(client, ada))

        # Each event again, in the group's own handler: as redelivered (the same envelope)
        # and as republished (a copy with a new id). A handler records what it asks for
        # before it returns, so this is read at once.
        [spec] = [c for c in runtime.consumers if (c.topic, c.group) == (feed.TOPIC, GROUP)]
        handler = spec.handler_factory()
        for envelope in envelopes:
            await handler(envelope)
            await handler(Envelope(type=envelope.type, key=envelope.key, payload=envelope.payload))
        assert await feed_notices(runtime.platform.database, ada_id) == [
            "feed_commented",
            "feed_followed",
            "feed_liked",
        ]
        assert sorted(i["id"] for i in await inbox(client, ada)) == first


async def test_an_event_of_an_unknown_actor_sends_nothing_and_the_group_goes_on(
    stack, smtp, tmp_path
):
    async with app(stack, smtp, tmp_path) as (client, runtime):
        bus, database = runtime.platform.bus, runtime.platform.database
        ada_id, ada = await user(client, "ada")
        nobody = str(new_id())
        envelope = await publish(
            runtime, feed.Followed(follower_id=nobody, followee_id=ada_id), ada_id
        )

        # The handler raises, the bus retries, then dead-letters the event, which an operator
        # can list and replay.
        letters = await eventually(lambda: bus.dead_letters(feed.TOPIC, GROUP), within=30)
        assert [letter.envelope.id for letter in letters] == [envelope.id]
        assert f"no user {nobody}" in letters[0].error
        assert await feed_notices(database, ada_id) == []

        # The group still handles what comes next.
        bob_id, _ = await user(client, "bob")
        await publish(runtime, feed.Followed(follower_id=bob_id, followee_id=ada_id), ada_id)
        await told(client, ada, "bob followed you")
        assert await feed_notices(database, ada_id) == ["feed_followed"]
