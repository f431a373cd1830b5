"""The news feed's domain: posts, comments, follows, the feed's positions (cursors), the
merge of a reader's cached timeline with the celebrities' posts read at read time, and the
relevance score. Pure: no I/O.

A post's id is a UUIDv7, so ids sort as the posts were made, and a post's place in every
timeline is its id: a cursor is the last id a page showed, and the next page is the ids below
it. New posts sort above the first page, so paging down never repeats or skips one.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from townhall.platform.errors import Forbidden, Invalid, NotFound

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PostNotFound(NotFound):
    pass


class UserNotFound(NotFound):
    pass


class NotAllowed(Forbidden):
    pass


class InvalidInput(Invalid):
    pass


class AttachmentRefused(InvalidInput):
    """An attachment names no upload of the author's (someone else's, an infected one, or
    none at all): told the same way, so nobody learns of another user's upload."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="attachments")


class InvalidCursor(Invalid):
    def __init__(self) -> None:
        super().__init__(
            "the cursor is malformed; pass back a next_cursor as it was", field="cursor"
        )


@dataclass(frozen=True)
class Post:
    id: str
    author: str
    text: str
    created_at: datetime
    attachments: tuple[str, ...] = ()
    like_count: int = 0
    comment_count: int = 0
    deleted: bool = False


@dataclass(frozen=True)
class Attachment:
    """How an attachment is shown to a reader: the file once its scan found it clean
    (`status` "CLEAN", with its name, type and size), else a placeholder with the status
    ("PENDING_SCAN", "FAILED"). An infected or deleted upload is not shown at all."""

    id: str
    status: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None


def shown_attachments(post: Post, shown: Mapping[str, Attachment]) -> tuple[Attachment, ...]:
    """The post's attachments as readers see them now (`shown`: the views of its uploads);
    one not in `shown` (infected, deleted) is left out."""
    return tuple(shown[i] for i in post.attachments if i in shown)


@dataclass(frozen=True)
class Comment:
    id: str
    post_id: str
    author: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class Follow:
    follower: str
    followee: str
    created_at: datetime


def created_at_of(post_id: str) -> datetime:
    """The time a post was made, from its UUIDv7 id (milliseconds)."""
    ms = uuid.UUID(post_id).int >> 80
    # Integer arithmetic: `fromtimestamp(ms / 1000)` goes through a float and is off by
    # microseconds for times far from now.
    return EPOCH + timedelta(milliseconds=ms)


def check_text(text: str, max_length: int, field: str = "text") -> str:
    if not text.strip():
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(text) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters", field=field)
    if "\x00" in text:
        raise InvalidInput(f"{field} must not contain NUL", field=field)
    return text


# Cursors ---------------------------------------------------------------------------------


def encode_cursor(post_id: str) -> str:
    """Opaque: base64url of the position (the last post id shown)."""
    return base64.urlsafe_b64encode(uuid.UUID(post_id).bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 16:
            raise ValueError
        post_id = str(uuid.UUID(bytes=raw))
    except (ValueError, binascii.Error):
        raise InvalidCursor() from None
    # The decoder skips characters outside the alphabet and ignores padding and the last
    # character's spare bits, so a cursor counts only as exactly what encode_cursor made.
    if encode_cursor(post_id) != cursor:
        raise InvalidCursor()
    return post_id


@dataclass(frozen=True)
class RankedPosition:
    """Where a ranked page ended: the time the ranking was computed at (every page of one
    scroll ranks as of it), the last item's score and id."""

    as_of_ms: int
    score: float
    post_id: str


def encode_ranked_cursor(position: RankedPosition) -> str:
    text = f"r1|{position.as_of_ms}|{position.score!r}|{position.post_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_ranked_cursor(cursor: str) -> RankedPosition:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, as_of, score, post_id = text.split("|")
        if tag != "r1":
            raise ValueError
        value = float(score)
        if not math.isfinite(value):
            raise ValueError
        position = RankedPosition(int(as_of), value, str(uuid.UUID(post_id)))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidCursor() from None
    if encode_ranked_cursor(position) != cursor:  # as decode_cursor: only what was made
        raise InvalidCursor()
    return position


# The hybrid read ---------------------------------------------------------------------------


def merge_newest(
    sources: Iterable[Sequence[str]], limit: int, before: str | None = None
) -> list[str]:
    """The newest `limit` distinct post ids of several newest-first lists (a cached
    timeline, each followed celebrity's recent posts), below `before` when given."""
    merged: list[str] = []
    if limit <= 0:  # else the first id is kept before the limit is checked
        return merged
    seen: set[str] = set()
    for post_id in heapq.merge(*sources, reverse=True):
        if before is not None and post_id >= before:
            continue
        if post_id in seen:
            continue
        seen.add(post_id)
        merged.append(post_id)
        if len(merged) == limit:
            break
    return merged


# Relevance ---------------------------------------------------------------------------------

HALF_LIFE_HOURS = 12.0


def relevance(
    likes: int,
    comments: int,
    age_hours: float,
    affinity: float,
    *,
    half_life: float = HALF_LIFE_HOURS,
) -> float:
    """Engagement (a like 1, a comment 3, plus 1 so a new post counts) decayed by age (halved
    every `half_life` hours) and raised by the reader's affinity to the author (their likes
    and comments on the author's posts, and following them)."""
    engagement = 1.0 + likes + 3.0 * comments
    decay: float = 0.5 ** (max(0.0, age_hours) / half_life)
    return engagement * decay * (1.0 + math.log1p(max(0.0, affinity)))
