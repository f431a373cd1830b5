"""The feed's use cases: posts, likes, comments, follows, and reading the home timeline with the
hybrid strategy (README.md): the reader's cached timeline (fanned out on write) merged with the
recent posts of the authors whose posts are read on fan-out-on-read (celebrities), past the
cache from the durable feed store, from SQL alone when the cache is down.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from townhall.feed.domain import (
    Attachment,
    AttachmentRefused,
    Comment,
    InvalidInput,
    NotAllowed,
    Post,
    PostNotFound,
    RankedPosition,
    UserNotFound,
    check_text,
    created_at_of,
    decode_cursor,
    decode_ranked_cursor,
    encode_cursor,
    encode_ranked_cursor,
    merge_newest,
    relevance,
    shown_attachments,
)
from townhall.feed.events import (
    Followed,
    PostCommented,
    PostCreated,
    PostDeleted,
    PostLiked,
    Unfollowed,
)
from townhall.feed.ports import (
    Activity,
    Attachments,
    FeedEvents,
    FeedStore,
    FollowStore,
    PostStore,
    Profiles,
    Scores,
    TimelineStore,
)
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id_str
from townhall.platform.transaction import Transactions

log = logging.getLogger(__name__)

RANKED_POOL = 200  # ranked mode ranks the newest this many posts of the feed
# A read records the reader as active at most this often.
TOUCH_EVERY = timedelta(hours=1)
# User ids, and the cursor of the next page.
UserPage = tuple[list[str], str | None]


@dataclass(frozen=True)
class FeedSettings:
    celebrity_threshold: int = 10_000
    backfill: int = 20
    inactive: timedelta = timedelta(days=30)
    max_text: int = 5000


@dataclass(frozen=True)
class FeedItem:
    post: Post
    author_username: str
    author_display_name: str | None
    attachments: tuple[Attachment, ...] = ()  # as shown now


@dataclass(frozen=True)
class FeedPage:
    items: list[FeedItem]
    next_cursor: str | None


class FeedService:
    def __init__(
        self,
        database: Transactions,
        posts: PostStore,
        follows: FollowStore,
        feed: FeedStore,
        activity: Activity,
        scores: Scores,
        timelines: TimelineStore,
        profiles: Profiles,
        events: FeedEvents,
        clock: Clock,
        settings: FeedSettings = FeedSettings(),
        attachments: Attachments | None = None,
    ) -> None:
        self._db = database
        self._posts = posts
        self._follows = follows
        self._feed = feed
        self._activity = activity
        self._scores = scores
        self.timelines = timelines
        self._profiles = profiles
        self._events = events
        self._clock = clock
        self.settings = settings
        self._attachments = attachments  # None: no uploads here, and no attachment is taken

    # Posts -------------------------------------------------------------------------------

    async def create_post(self, author: str, text: str, attachments: Sequence[str] = ()) -> Post:
        """Its attachments must be uploads of the author's: the post's readers are let see
        them before the post is stored (`AttachmentRefused` otherwise; what was let see for
        a post never stored is seen by nobody, as no such post exists)."""
        check_text(text, self.settings.max_text)
        post_id = new_id_str()
        upload_ids = tuple(dict.fromkeys(attachments))
        if upload_ids:
            if self._attachments is None:
                raise AttachmentRefused("attachments are not taken here")
            await self._attachments.attach(author, upload_ids, post_id)
        post = Post(post_id, author, text, created_at_of(post_id), upload_ids)
        async with self._db.transaction() as tx:
            await self._posts.add(tx, post)
            await self._events.publish(
                tx, PostCreated(post_id, author, post.created_at.isoformat())
            )
        # Read your own writes: the author's own timeline now (the fan-out does it too).
        try:
            await self.timelines.push([(author, post_id)])
        except Exception as exc:
            log.warning("feed: the author's timeline was not updated at once: %s", exc)
        return post

    async def post(self, post_id: str) -> Post:
        async with self._db.connect() as tx:
            post = await self._posts.get(tx, post_id)
        if post is None or post.deleted:
            raise PostNotFound("no such post")
        return post

    async def may_see_post(self, user: str, post_id: str) -> bool:
        """Whether `user` may see what is attached to the post (the uploads module asks, for
        `feed.post:<id>`): posts are public to signed-in users, while they exist."""
        async with self._db.connect() as tx:
            post = await self._posts.get(tx, post_id)
        return post is not None and not post.deleted

    async def shown(self, posts: Sequence[Post]) -> dict[str, Attachment]:
        """How the posts' attachments are shown now (one call to uploads for them all; none
        for posts without any)."""
        upload_ids = {i for post in posts for i in post.attachments}
        if not upload_ids or self._attachments is None:
            return {}
        return await self._attachments.views(upload_ids)

    async def delete_post(self, actor: str, post_id: str, *, admin: bool = False) -> None:
        async with self._db.transaction() as tx:
            post = await self._posts.get(tx, post_id)
            if post is None or post.deleted:
                raise PostNotFound("no such post")
            if post.author != actor and not admin:
                raise NotAllowed("only the author or an administrator deletes a post")
            if await self._posts.delete(tx, post_id, self._clock.now()):
                await self._events.publish(tx, PostDeleted(post_id, post.author))

    async def like(self, user: str, post_id: str) -> Post:
        async with self._db.transaction() as tx:
            post = await self._posts.get(tx, post_id)
            if post is None or post.deleted:
                raise PostNotFound("no such post")
            if await self._posts.like(tx, post_id, user, self._clock.now()):
                await self._events.publish(tx, PostLiked(post_id, post.author, user))
        return await self.post(post_id)

    async def unlike(self, user: str, post_id: str) -> Post:
        async with self._db.transaction() as tx:
            post = await self._posts.get(tx, post_id)
            if post is None or post.deleted:
                raise PostNotFound("no such post")
            await self._posts.unlike(tx, post_id, user)
        return await self.post(post_id)

    async def comment(self, user: str, post_id: str, text: str) -> Comment:
        check_text(text, self.settings.max_text)
        comment_id = new_id_str()
        comment = Comment(comment_id, post_id, user, text, created_at_of(comment_id))
        async with self._db.transaction() as tx:
            post = await self._posts.get(tx, post_id)
            if post is None or post.deleted:
                raise PostNotFound("no such post")
            await self._posts.add_comment(tx, comment)
            await self._events.publish(
                tx, PostCommented(post_id, post.author, comment_id, user, text[:200])
            )
        return comment

    async def comments(self, post_id: str, cursor: str | None, limit: int) -> list[Comment]:
        after = decode_cursor(cursor) if cursor else None
        await self.post(post_id)
        async with self._db.connect() as tx:
            return await self._posts.comments(tx, post_id, after, limit)

    # Follows -----------------------------------------------------------------------------

    async def follow(self, follower: str, followee: str) -> None:
        if follower == followee:
            raise InvalidInput("you cannot follow yourself", field="user_id")
        if followee not in await self._profiles.profiles([followee]):
            raise UserNotFound("no such user")
        async with self._db.transaction() as tx:
            if await self._follows.follow(tx, follower, followee, self._clock.now()):
                await self._events.publish(tx, Followed(follower, followee))

    async def unfollow(self, follower: str, followee: str) -> None:
        if follower == followee:
            raise InvalidInput("you cannot unfollow yourself", field="user_id")
        async with self._db.transaction() as tx:
            if await self._follows.unfollow(tx, follower, followee):
                await self._events.publish(tx, Unfollowed(follower, followee))

    async def followers(
        self, user: str, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        await self._known(user)
        after = decode_cursor(cursor) if cursor else None
        async with self._db.connect() as tx:
            found = await self._follows.followers(tx, user, after, limit)
        return found, encode_cursor(found[-1]) if len(found) == limit else None

    async def following(
        self, user: str, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        await self._known(user)
        after = decode_cursor(cursor) if cursor else None
        async with self._db.connect() as tx:
            found = await self._follows.following(tx, user, after, limit)
        return found, encode_cursor(found[-1]) if len(found) == limit else None

    async def profiles(self, user_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        return await self._profiles.profiles(user_ids)

    async def _known(self, user: str) -> None:
        if user not in await self._profiles.profiles([user]):
            raise UserNotFound("no such user")

    # Reading -----------------------------------------------------------------------------

    async def user_posts(self, author: str, cursor: str | None, limit: int) -> FeedPage:
        await self._known(author)
        before = decode_cursor(cursor) if cursor else None
        async with self._db.connect() as tx:
            found = await self._posts.by_author(tx, author, before, limit)
        items = await self._items(found)
        last = found[-1].id if len(found) == limit else None
        return FeedPage(items, encode_cursor(last) if last else None)

    async def feed(
        self,
        reader: str,
        cursor: str | None,
        limit: int,
        mode: Literal["latest", "ranked"] = "latest",
    ) -> FeedPage:
        if mode == "ranked":
            return await self._ranked(reader, cursor, limit)
        before = decode_cursor(cursor) if cursor else None
        await self._ensure_timeline(reader)
        ids = await self.positions(reader, before, limit)
        posts = await self._visible(ids)
        next_cursor = encode_cursor(ids[-1]) if len(ids) == limit else None
        return FeedPage(await self._items(posts), next_cursor)

    async def positions(self, reader: str, before: str | None, limit: int) -> list[str]:
        """The next `limit` post ids of the reader's home timeline below `before`: the cached
        timeline, merged with the read-time authors' posts. Where the cache cannot answer
        (down, or scrolled past: trimmed), the feed store and the followed authors' posts
        (the posts database, the truth the timelines are built from) stand in for it."""
        async with self._db.connect() as tx:
            merged_authors = await self._follows.read_time_authors(tx, reader)
        try:
            cached = await self.timelines.page(reader, before, limit)
            # Whether the cache was trimmed matters only when it ran out on this page.
            short = cached is not None and len(cached) < limit
            size = await self.timelines.size(reader) if short else None
        except Exception as exc:
            log.warning("feed: timelines unreachable, reading SQL: %s", exc)
            cached, size = None, None
        sources: list[list[str]] = []
        async with self._db.connect() as tx:
            below, need = before, limit
            if cached is not None:
                sources.append(cached)
                trimmed = size is not None and size >= self.timelines.length
                below, need = (cached[-1] if cached else before), limit - len(cached)
                if not trimmed:
                    need = 0  # the cache holds the whole timeline
            if need > 0:
                sources.append(await self._feed.page(tx, reader, below, need))
                authors = [reader, *await self._follows.all_following(tx, reader)]
                found = await self._posts.ids_by_authors(tx, authors, below, need)
                sources.append([post_id for post_id, _ in found])
            if merged_authors:
                found = await self._posts.ids_by_authors(tx, merged_authors, before, limit)
                sources.append([post_id for post_id, _ in found])
        return merge_newest(sources, limit, before)

    async def _ensure_timeline(self, reader: str) -> None:
        """A reader who was inactive (not fanned out to) or never read, or whose cached
        timeline is gone, gets it rebuilt from the feed store and the posts database."""
        now = self._clock.now()
        async with self._db.connect() as tx:
            previous = await self._activity.last_read(tx, reader)
        if previous is None or now - previous >= TOUCH_EVERY:  # a write once an hour at most
            async with self._db.transaction() as tx:
                await self._activity.touch(tx, reader, now)
        inactive = previous is None or now - previous >= self.settings.inactive
        try:
            cached = await self.timelines.size(reader) is not None
        except Exception:
            return  # the cache is down: reads go to SQL
        if cached and not inactive:
            return
        await self.rebuild(reader, since_inactive=inactive)

    async def rebuild(self, reader: str, *, since_inactive: bool = True) -> int:
        length = self.timelines.length
        async with self._db.connect() as tx:
            stored = await self._feed.page(tx, reader, None, length)
            authors = [reader, *await self._follows.all_following(tx, reader)]
            recent = await self._posts.ids_by_authors(tx, authors, None, length)
        if since_inactive:
            # What fan-out skipped while the reader was inactive goes into the feed store too.
            missing = [(reader, p, a) for p, a in recent if p not in set(stored)]
            if missing:
                async with self._db.transaction() as tx:
                    await self._feed.add(tx, missing)
        ids = merge_newest([stored, [p for p, _ in recent]], length)
        await self.timelines.replace(reader, ids)
        return len(ids)

    async def _ranked(self, reader: str, cursor: str | None, limit: int) -> FeedPage:
        """The newest RANKED_POOL posts ranked by relevance as of the first page's time (each
        page of a scroll ranks as of it), then by id."""
        now_ms = int(self._clock.now().timestamp() * 1000)
        position = decode_ranked_cursor(cursor) if cursor else None
        as_of_ms = position.as_of_ms if position else now_ms
        await self._ensure_timeline(reader)
        bound = _id_bound(as_of_ms)
        pool = await self._visible(await self.positions(reader, bound, RANKED_POOL))
        async with self._db.connect() as tx:
            affinity = await self._scores.affinities(tx, reader, {p.author for p in pool})
        scored = sorted(
            (
                (
                    relevance(
                        post.like_count,
                        post.comment_count,
                        (as_of_ms - post.created_at.timestamp() * 1000) / 3_600_000,
                        affinity.get(post.author, 0.0),
                    ),
                    post,
                )
                for post in pool
            ),
            key=lambda pair: (pair[0], pair[1].id),
            reverse=True,
        )
        if position is not None:
            mark = (position.score, position.post_id)
            scored = [pair for pair in scored if (pair[0], pair[1].id) < mark]
        page = scored[:limit]
        next_cursor = None
        if len(page) == limit and len(scored) > limit:
            score, last = page[-1]
            next_cursor = encode_ranked_cursor(RankedPosition(as_of_ms, score, last.id))
        return FeedPage(await self._items([post for _, post in page]), next_cursor)

    async def _visible(self, ids: Sequence[str]) -> list[Post]:
        """The posts of these ids that still exist, in the same order (a deleted post drops
        out of every feed at once, before any timeline is cleaned)."""
        if not ids:
            return []
        async with self._db.connect() as tx:
            found = await self._posts.visible(tx, ids)
        return [found[post_id] for post_id in ids if post_id in found]

    async def _items(self, posts: Sequence[Post]) -> list[FeedItem]:
        profiles = await self._profiles.profiles({post.author for post in posts})
        shown = await self.shown(posts)
        return [
            FeedItem(
                post,
                *profiles.get(post.author, ("unknown", None)),
                shown_attachments(post, shown),
            )
            for post in posts
        ]


def _id_bound(ms: int) -> str:
    """The smallest UUIDv7 string of the millisecond after `ms`: every id made up to `ms` is
    below it."""
    hex_ms = f"{ms + 1:012x}"
    return f"{hex_ms[:8]}-{hex_ms[8:]}-0000-0000-000000000000"
