"""What the feed's service and workers need from the outside world.

Positions are post ids (UUIDv7 strings, which sort as the posts were made): every list here
is newest first, and `before` means ids strictly below it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from townhall.feed.domain import Attachment, Comment, Post
from townhall.platform.transaction import Transaction


class FeedEvent(Protocol):
    type: str

    def to_payload(self) -> dict[str, Any]: ...


class FeedEvents(Protocol):
    async def publish(self, tx: Transaction, event: FeedEvent) -> None:
        """Put the event in the outbox of the caller's transaction (topic `feed`)."""
        ...


class TimelineStore(Protocol):
    """The cached home timelines (one sorted set a reader, trimmed to `length`). Redis, or
    in-process on embedded defaults. A cache: what it loses is rebuilt from SQL."""

    length: int  # the entries a timeline keeps (the oldest go)

    async def push(self, entries: Sequence[tuple[str, str]]) -> None:
        """Add each (owner, post id) to the owner's timeline when it is cached (a timeline
        not built is left alone: its first read rebuilds it), trimming each to `length`. One
        round trip for the lot."""
        ...

    async def page(self, owner: str, before: str | None, limit: int) -> list[str] | None:
        """Up to `limit` post ids of the owner's timeline below `before`, newest first; None
        when the timeline is not cached (never built, or evicted)."""
        ...

    async def size(self, owner: str) -> int | None:
        """How many entries the cached timeline holds; None when not cached."""
        ...

    async def replace(self, owner: str, post_ids: Sequence[str]) -> None:
        """Make the owner's timeline exactly these ids (kept to the newest `length`), marked
        cached: a rebuild."""
        ...

    async def remove(self, owner: str, post_ids: Collection[str]) -> None: ...

    async def drop(self, owner: str) -> None:
        """Forget the owner's timeline (not cached any more)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class PostStore(Protocol):
    """Posts, likes and comments (the posts database)."""

    async def add(self, tx: Transaction, post: Post) -> None: ...

    async def get(self, tx: Transaction, post_id: str) -> Post | None:
        """The post, deleted ones included (`deleted` says)."""
        ...

    async def visible(self, tx: Transaction, post_ids: Sequence[str]) -> dict[str, Post]:
        """The posts of these ids that exist and are not deleted, by id (one query)."""
        ...

    async def delete(self, tx: Transaction, post_id: str, at: datetime) -> bool:
        """Mark deleted; False when it already was (or does not exist)."""
        ...

    async def by_author(
        self, tx: Transaction, author: str, before: str | None, limit: int
    ) -> list[Post]:
        """The author's posts that are not deleted, newest first."""
        ...

    async def ids_by_authors(
        self, tx: Transaction, authors: Collection[str], before: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """(post id, author) of these authors' posts that are not deleted, below `before`,
        newest first, at most `limit` (one indexed query: the fan-out-on-read path)."""
        ...

    async def like(self, tx: Transaction, post_id: str, user: str, at: datetime) -> bool:
        """False when the user already liked it."""
        ...

    async def unlike(self, tx: Transaction, post_id: str, user: str) -> bool: ...

    async def add_comment(self, tx: Transaction, comment: Comment) -> None: ...

    async def comments(
        self, tx: Transaction, post_id: str, after: str | None, limit: int
    ) -> list[Comment]:
        """Oldest first, after the comment id `after`."""
        ...


class FollowStore(Protocol):
    async def follow(self, tx: Transaction, follower: str, followee: str, at: datetime) -> bool:
        """False when already following. Keeps the followee's follower count."""
        ...

    async def unfollow(self, tx: Transaction, follower: str, followee: str) -> bool: ...

    async def follower_count(self, tx: Transaction, user: str) -> int: ...

    async def followers(
        self, tx: Transaction, user: str, after: str | None, limit: int
    ) -> list[str]:
        """Follower ids in id order after `after` (pages of the fan-out, and of the API)."""
        ...

    async def following(
        self, tx: Transaction, user: str, after: str | None, limit: int
    ) -> list[str]: ...

    async def all_following(self, tx: Transaction, user: str) -> list[str]: ...

    async def read_time_authors(self, tx: Transaction, user: str) -> list[str]:
        """The followed authors whose posts are read at read time: those with a post that was
        not fanned out (a celebrity now, or one before: their earlier posts are in no
        timeline, so crossing the threshold either way loses no post)."""
        ...

    async def mark_read_time(self, tx: Transaction, author: str) -> None:
        """A post of `author` was not fanned out."""
        ...


class FeedStore(Protocol):
    """The durable home timelines (SQL): what fan-out wrote, beyond what the cache keeps."""

    async def add(self, tx: Transaction, entries: Sequence[tuple[str, str, str]]) -> None:
        """(owner, post id, author) rows, one multi-row insert; a row already there is kept."""
        ...

    async def page(
        self, tx: Transaction, owner: str, before: str | None, limit: int
    ) -> list[str]: ...

    async def remove_author(self, tx: Transaction, owner: str, author: str) -> list[str]:
        """Remove the author's posts from the owner's timeline; returns their ids."""
        ...

    async def remove_post(self, tx: Transaction, post_id: str) -> list[str]:
        """Remove the post from every timeline; returns the owners it was in."""
        ...


class Inbox(Protocol):
    async def first_time(self, tx: Transaction, group: str, envelope_id: str) -> bool:
        """Record the envelope as handled by `group` in the caller's transaction; False when
        it already was (a redelivery)."""
        ...


class Activity(Protocol):
    """When each user last read their feed (inactive users are not fanned out to)."""

    async def last_read(self, tx: Transaction, user: str) -> datetime | None: ...

    async def touch(self, tx: Transaction, user: str, at: datetime) -> datetime | None:
        """Record a read now; returns the previous one (None: never read)."""
        ...

    async def active_among(
        self, tx: Transaction, users: Sequence[str], since: datetime
    ) -> set[str]:
        """Which of the users read their feed at or after `since`."""
        ...


class Scores(Protocol):
    """What the ranked feed reads, kept by the scoring worker: each reader's affinity to
    each author."""

    async def add_affinity(
        self, tx: Transaction, reader: str, author: str, amount: float
    ) -> None: ...

    async def affinities(
        self, tx: Transaction, reader: str, authors: Collection[str]
    ) -> dict[str, float]: ...


class Profiles(Protocol):
    """Who a user is (identity), for the feed items' `author`."""

    async def profiles(self, user_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        """user id -> (username, display name), for the ids that name a user."""
        ...


class Attachments(Protocol):
    """What the feed asks the uploads module about the files attached to posts."""

    async def attach(
        self, author: str, upload_ids: Sequence[str], post_id: str
    ) -> dict[str, Attachment]:
        """Let the post's readers see these uploads of `author`, and how each is shown now;
        `AttachmentRefused` for an id that is not an upload of theirs, or an infected one."""
        ...

    async def views(self, upload_ids: Collection[str]) -> dict[str, Attachment]:
        """How each upload is shown now; an infected or deleted one is absent."""
        ...
