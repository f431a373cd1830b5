"""The feed's public integration events (versioned; additive changes only), on topic `feed`.

The fan-out workers (`feed.fanout`) build the timelines from `PostCreated`, `PostDeleted`,
`Followed` and `Unfollowed`; the scoring worker (`feed.scoring`) keeps affinities from
`PostLiked`, `PostCommented` and `Followed`; notifications tells an author of a new follower,
a like and a comment.
"""

from __future__ import annotations

from dataclasses import dataclass

from townhall.platform.integration_events import FlatEvent

TOPIC = "feed"


@dataclass(frozen=True)
class PostCreated(FlatEvent):
    type = "feed.PostCreated"
    version = 1

    post_id: str
    author_id: str
    created_at: str  # ISO 8601


@dataclass(frozen=True)
class PostDeleted(FlatEvent):
    type = "feed.PostDeleted"
    version = 1

    post_id: str
    author_id: str


@dataclass(frozen=True)
class Followed(FlatEvent):
    type = "feed.Followed"
    version = 1

    follower_id: str
    followee_id: str


@dataclass(frozen=True)
class Unfollowed(FlatEvent):
    type = "feed.Unfollowed"
    version = 1

    follower_id: str
    followee_id: str


@dataclass(frozen=True)
class PostLiked(FlatEvent):
    type = "feed.PostLiked"
    version = 1

    post_id: str
    author_id: str  # the post's author
    user_id: str  # who liked it


@dataclass(frozen=True)
class PostCommented(FlatEvent):
    type = "feed.PostCommented"
    version = 1

    post_id: str
    author_id: str  # the post's author
    comment_id: str
    user_id: str  # who commented
    excerpt: str
