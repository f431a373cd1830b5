"""What an author is told about their followers and posts: the in-app notification that each of
the feed's `Followed`, `PostLiked` and `PostCommented` asks for, naming who did it by
username. The mapping is pure (an event's type and payload in, a `FeedNotice` or nothing out);
the actor's username is then looked up in identity's facade, as the events carry only ids.

Only the feed's `events.py` is read here, never its internals.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from townhall.feed import events as feed
from townhall.notifications.events import NotificationRequested

CATEGORY = "feed"
# The feed is seen in the app: a follower, a like or a comment is not worth an email or a push.
CHANNELS = ("in_app",)


class Named(Protocol):
    @property
    def username(self) -> str: ...


class Usernames(Protocol):
    """Who users are, by id (identity's facade); an unknown id is absent."""

    async def contacts(self, user_ids: Collection[str]) -> Mapping[str, Named]: ...


class UnknownActor(LookupError):
    """The event names an actor who is not a user: the bus retries, then dead-letters it."""


@dataclass(frozen=True)
class FeedNotice:
    """A notice waiting for its actor's username."""

    actor_id: str
    recipient: str
    template: str
    idempotency_key: str
    data: Mapping[str, str] = field(default_factory=dict)

    def request(self, actor: str) -> NotificationRequested:
        return NotificationRequested(
            recipient=self.recipient,
            channels=list(CHANNELS),
            category=CATEGORY,
            template=self.template,
            data={"actor": actor, "actor_id": self.actor_id, **self.data},
            idempotency_key=self.idempotency_key,
        )


# The idempotency keys are the facts' natural keys, so a redelivered or republished event finds
# its key taken. A follow is told once per follower and followee, a like once per post and user:
# following again after an unfollow, or liking again after an unlike, tells nobody twice (a
# user cannot make someone's inbox ring by toggling). A comment is told once per comment.


def _followed(payload: Mapping[str, Any]) -> FeedNotice | None:
    event = feed.Followed.from_payload(dict(payload))
    if event.follower_id == event.followee_id:
        return None
    return FeedNotice(
        actor_id=event.follower_id,
        recipient=event.followee_id,
        template="feed_followed",
        idempotency_key=f"follow:{event.follower_id}:{event.followee_id}",
    )


def _liked(payload: Mapping[str, Any]) -> FeedNotice | None:
    event = feed.PostLiked.from_payload(dict(payload))
    if event.user_id == event.author_id:
        return None
    return FeedNotice(
        actor_id=event.user_id,
        recipient=event.author_id,
        template="feed_liked",
        idempotency_key=f"like:{event.post_id}:{event.user_id}",
        data={"post_id": event.post_id},
    )


def _commented(payload: Mapping[str, Any]) -> FeedNotice | None:
    event = feed.PostCommented.from_payload(dict(payload))
    if event.user_id == event.author_id:
        return None
    return FeedNotice(
        actor_id=event.user_id,
        recipient=event.author_id,
        template="feed_commented",
        idempotency_key=f"comment:{event.comment_id}",
        data={"post_id": event.post_id, "comment_id": event.comment_id, "excerpt": event.excerpt},
    )


NOTICES: Mapping[str, Callable[[Mapping[str, Any]], FeedNotice | None]] = {
    feed.Followed.type: _followed,
    feed.PostLiked.type: _liked,
    feed.PostCommented.type: _commented,
}
TOPICS = (feed.TOPIC,)


def notice_for(message_type: str, payload: Mapping[str, Any]) -> FeedNotice | None:
    """The notice an event asks for; None for a user's own action on their own post or account
    and for any other message on the feed's topic."""
    notice = NOTICES.get(message_type)
    return None if notice is None else notice(payload)


async def request_for(notice: FeedNotice, usernames: Usernames) -> NotificationRequested:
    """The notification, naming the actor by their username; `UnknownActor` if there is none."""
    found = (await usernames.contacts([notice.actor_id])).get(notice.actor_id)
    if found is None:
        raise UnknownActor(f"no user {notice.actor_id}")
    return notice.request(found.username)
