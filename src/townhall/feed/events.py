"""The feed's public integration events (versioned; additive changes only), on topic `feed`.

The fan-out workers (`feed.fanout`) build the timelines from `PostCreated`, `PostDeleted`,
`Followed` and `Unfollowed`; the scoring worker (`feed.scoring`) keeps affinities from
`PostLiked`, `PostCommented` and `Followed`; notifications tells an author of a new follower,
a like and a comment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TOPIC = "feed"


@dataclass(frozen=True)
class _Event:
    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Any:
        fields = cls.__dataclass_fields__
        return cls(**{name: value for name, value in payload.items() if name in fields})


@dataclass(frozen=True)
class PostCreated(_Event):
    type = "feed.PostCreated"
    version = 1

    post_id: str
    author_id: str
    created_at: str  # ISO 8601


@dataclass(frozen=True)
class PostDeleted(_Event):
    type = "feed.PostDeleted"
    version = 1

    post_id: str
    author_id: str


@dataclass(frozen=True)
class Followed(_Event):
    type = "feed.Followed"
    version = 1

    follower_id: str
    followee_id: str


@dataclass(frozen=True)
class Unfollowed(_Event):
    type = "feed.Unfollowed"
    version = 1

    follower_id: str
    followee_id: str


@dataclass(frozen=True)
class PostLiked(_Event):
    type = "feed.PostLiked"
    version = 1

    post_id: str
    author_id: str  # the post's author
    user_id: str  # who liked it


@dataclass(frozen=True)
class PostCommented(_Event):
    type = "feed.PostCommented"
    version = 1

    post_id: str
    author_id: str  # the post's author
    comment_id: str
    user_id: str  # who commented
    excerpt: str
