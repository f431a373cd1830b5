"""The feed's consumer groups on topic `feed`:

- `feed.fanout` builds the home timelines: a normal author's post goes to each active
  follower's timeline (the durable feed store in multi-row inserts, the cache in pipelined
  writes), a celebrity's to nobody (its followers read it at read time); a follow backfills the
  author's recent posts, an unfollow takes them out, a deletion cleans the timelines.
- `feed.scoring` keeps each reader's affinity to the authors they like, comment on and follow,
  for the ranked feed.

Both are idempotent: the feed store ignores rows it has, the cache's writes are set
operations, and the scoring group records each envelope it applied (the inbox).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from townhall.feed.events import (
    TOPIC,
    Followed,
    PostCommented,
    PostCreated,
    PostDeleted,
    PostLiked,
    Unfollowed,
)
from townhall.feed.ports import (
    Activity,
    FeedStore,
    FollowStore,
    Inbox,
    PostStore,
    Scores,
    TimelineStore,
)
from townhall.platform.clock import Clock
from townhall.platform.messaging import ConsumerSpec, Envelope
from townhall.platform.transaction import Transactions

log = logging.getLogger(__name__)

FANOUT_GROUP = "feed.fanout"
SCORING_GROUP = "feed.scoring"
FOLLOWER_PAGE = 1000  # followers fanned out to per batch (one insert, one pipeline)

# Affinity a reader gains to an author.
AFFINITY = {Followed.type: 2.0, PostLiked.type: 1.0, PostCommented.type: 3.0}


class Fanout:
    def __init__(
        self,
        database: Transactions,
        posts: PostStore,
        follows: FollowStore,
        feed: FeedStore,
        activity: Activity,
        timelines: TimelineStore,
        clock: Clock,
        *,
        celebrity_threshold: int,
        backfill: int,
        inactive: timedelta,
    ) -> None:
        self._db = database
        self._posts = posts
        self._follows = follows
        self._feed = feed
        self._activity = activity
        self._timelines = timelines
        self._clock = clock
        self.celebrity_threshold = celebrity_threshold
        self.backfill = backfill
        self.inactive = inactive

    async def handle(self, envelope: Envelope) -> None:
        handlers: dict[str, Callable[[Envelope], Awaitable[None]]] = {
            PostCreated.type: self._post_created,
            PostDeleted.type: self.post_deleted,
            Followed.type: self.followed,
            Unfollowed.type: self.unfollowed,
        }
        handler = handlers.get(envelope.type)
        if handler is not None:
            await handler(envelope)

    async def _post_created(self, envelope: Envelope) -> None:
        await self.post_created(envelope)

    async def post_created(self, envelope: Envelope) -> int:
        """Returns how many timelines it was written to."""
        event = PostCreated.from_payload(envelope.payload)
        author, post_id = event.author_id, event.post_id
        async with self._db.connect() as tx:
            count = await self._follows.follower_count(tx, author)
        if count > self.celebrity_threshold:
            async with self._db.transaction() as tx:
                await self._follows.mark_read_time(tx, author)
            await self._deliver([author], post_id, author)  # their own timeline only
            return 1
        since = self._clock.now() - self.inactive
        # Every timeline in the durable store first, then the caches: with the cache down the
        # message fails (and is retried, or dead-lettered) only once the store is complete, so
        # reads from SQL show the post meanwhile, and so does a rebuild when the cache returns.
        owners = [author]
        after: str | None = None
        while True:
            async with self._db.connect() as tx:
                followers = await self._follows.followers(tx, author, after, FOLLOWER_PAGE)
                active = (
                    await self._activity.active_among(tx, followers, since) if followers else set()
                )
            batch = [f for f in followers if f in active]
            await self._store(batch, post_id, author)
            owners += batch
            if len(followers) < FOLLOWER_PAGE:
                break
            after = followers[-1]
        await self._store([author], post_id, author)
        for start in range(0, len(owners), FOLLOWER_PAGE):
            await self._timelines.push(
                [(o, post_id) for o in owners[start : start + FOLLOWER_PAGE]]
            )
        return len(owners)

    async def _store(self, owners: list[str], post_id: str, author: str) -> None:
        if owners:
            async with self._db.transaction() as tx:
                await self._feed.add(tx, [(owner, post_id, author) for owner in owners])

    async def _deliver(self, owners: list[str], post_id: str, author: str) -> int:
        """The durable store first (committed), then the cache: a cache write that fails
        fails the message, which the bus redelivers; both writes are idempotent."""
        if not owners:
            return 0
        await self._store(owners, post_id, author)
        await self._timelines.push([(owner, post_id) for owner in owners])
        return len(owners)

    async def post_deleted(self, envelope: Envelope) -> None:
        event = PostDeleted.from_payload(envelope.payload)
        async with self._db.transaction() as tx:
            owners = await self._feed.remove_post(tx, event.post_id)
        for owner in owners:
            await self._timelines.remove(owner, [event.post_id])

    async def followed(self, envelope: Envelope) -> None:
        event = Followed.from_payload(envelope.payload)
        if self.backfill == 0:
            return
        async with self._db.connect() as tx:
            recent = await self._posts.by_author(tx, event.followee_id, None, self.backfill)
        if not recent:
            return
        async with self._db.transaction() as tx:
            await self._feed.add(tx, [(event.follower_id, p.id, p.author) for p in recent])
        await self._timelines.push([(event.follower_id, p.id) for p in recent])

    async def unfollowed(self, envelope: Envelope) -> None:
        event = Unfollowed.from_payload(envelope.payload)
        async with self._db.transaction() as tx:
            removed = await self._feed.remove_author(tx, event.follower_id, event.followee_id)
            # The cache may hold posts the store never did (the author's backfill raced):
            # everything the author posted recently goes too.
            recent = await self._posts.by_author(
                tx, event.followee_id, None, self._timelines.length
            )
        await self._timelines.remove(event.follower_id, set(removed) | {p.id for p in recent})


class Scoring:
    def __init__(self, database: Transactions, scores: Scores, inbox: Inbox) -> None:
        self._db = database
        self._scores = scores
        self._inbox = inbox

    async def handle(self, envelope: Envelope) -> None:
        amount = AFFINITY.get(envelope.type)
        if amount is None:
            return
        payload = envelope.payload
        if envelope.type == Followed.type:
            reader, author = payload["follower_id"], payload["followee_id"]
        else:
            reader, author = payload["user_id"], payload["author_id"]
        if reader == author:
            return
        async with self._db.transaction() as tx:
            if await self._inbox.first_time(tx, SCORING_GROUP, str(envelope.id)):
                await self._scores.add_affinity(tx, reader, author, amount)


def feed_consumers(fanout: Fanout, scoring: Scoring) -> list[ConsumerSpec]:
    return [
        ConsumerSpec(TOPIC, FANOUT_GROUP, lambda: fanout.handle, prefetch=100, max_attempts=10),
        ConsumerSpec(TOPIC, SCORING_GROUP, lambda: scoring.handle),
    ]
