"""The synthetic social graph of `bench/feed.py`, made in memory (seeded) and bulk-loaded with
COPY straight into the feed's tables: the graph is the setup, not what is measured.

- `users` users (ids: random UUID strings). Everyone follows a power-law number of others
  (Pareto, mean about 15), chosen by popularity rank with weight (rank + 1) ** -0.8, so a
  few accounts have tens of thousands of followers, a band has 1,000 to 10,000, most a few.
- `celebrities` accounts followed by 50,000 to 60,000 users each (scaled with `users`).
- `readers` sampled readers each follow `reader_follows` more authors (uniformly) and two
  celebrities, so their feed is long enough to have a page 20 of 50.
- posts: `posts_per_user` on average per user (author chosen uniformly), celebrities 300
  each, spread over the last 7 days; ids are UUIDv7 of their millisecond.
- every user read their feed just now (all are active: fan-out reaches every follower).
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

DAY_MS = 86_400_000


def uuid7_at(ms: int, rng: random.Random) -> str:
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= rng.getrandbits(12) << 64
    value |= 0b10 << 62
    value |= rng.getrandbits(62)
    return str(uuid.UUID(int=value))


@dataclass
class Graph:
    users: list[str]
    celebrities: list[str]
    readers: list[str]
    # follower index -> followee indexes
    following: dict[int, set[int]]
    follower_count: list[int]
    # author index -> post ids, ascending
    posts: dict[int, list[str]] = field(default_factory=dict)
    post_count: int = 0

    @property
    def follow_count(self) -> int:
        return sum(len(v) for v in self.following.values())

    def index(self) -> dict[str, int]:
        return {user: n for n, user in enumerate(self.users)}

    def feed_of(self, reader: int, authors: set[int] | None = None) -> list[str]:
        """The reader's whole home timeline, newest first: their own posts and those of the
        authors they follow (only `authors` among them, when given)."""
        followed = self.following.get(reader, set()) | {reader}
        if authors is not None:
            followed = {a for a in followed if a in authors or a == reader}
        ids: list[str] = []
        for author in followed:
            ids += self.posts.get(author, [])
        ids.sort(reverse=True)
        return ids


def build(
    users: int,
    celebrities: int,
    celebrity_followers: int,
    readers: int,
    reader_follows: int,
    posts_per_user: int,
    seed: int = 7,
) -> Graph:
    rng = random.Random(seed)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(users)]
    celebs = list(range(celebrities))  # indexes 0..celebrities-1
    # Popularity ranks over everyone else, shuffled so rank is not the index.
    ranked = list(range(celebrities, users))
    rng.shuffle(ranked)
    cumulative = list(itertools.accumulate((rank + 1) ** -0.8 for rank in range(len(ranked))))
    total = cumulative[-1]
    following: dict[int, set[int]] = {}
    for follower in range(users):
        degree = min(2000, int(rng.paretovariate(1.5) * 5))
        chosen = following.setdefault(follower, set())
        for _ in range(degree):
            pick = ranked[bisect.bisect_left(cumulative, rng.random() * total)]
            if pick != follower:
                chosen.add(pick)
    for celeb in celebs:
        count = rng.randint(celebrity_followers, celebrity_followers * 6 // 5)
        for follower in rng.sample(range(celebrities, users), count):
            following[follower].add(celeb)
    sampled = rng.sample(range(celebrities, users), readers)
    for reader in sampled:
        chosen = following[reader]
        chosen.update(x for x in rng.sample(ranked, reader_follows) if x != reader)
        chosen.update(rng.sample(celebs, min(2, celebrities)))
    follower_count = [0] * users
    for followees in following.values():
        for followee in followees:
            follower_count[followee] += 1

    graph = Graph(
        ids, [ids[c] for c in celebs], [ids[r] for r in sampled], following, follower_count
    )
    now_ms = int(time.time() * 1000) - 60_000
    posts: dict[int, list[str]] = {}
    for _ in range(users * posts_per_user):
        author = rng.randrange(celebrities, users)
        posts.setdefault(author, []).append(uuid7_at(now_ms - rng.randrange(7 * DAY_MS), rng))
    for celeb in celebs:
        posts[celeb] = [uuid7_at(now_ms - rng.randrange(7 * DAY_MS), rng) for _ in range(300)]
    for author_posts in posts.values():
        author_posts.sort()
    graph.posts = posts
    graph.post_count = sum(len(v) for v in posts.values())
    return graph


def _ms_of(post_id: str) -> datetime:
    return datetime.fromtimestamp((uuid.UUID(post_id).int >> 80) / 1000, UTC)


async def load(dsn: str, graph: Graph, threshold: int) -> None:
    """COPY the graph into the feed's tables (indexes already there, from the migrations),
    then VACUUM ANALYZE. feed_users: every user, active now, `read_time` for those above
    `threshold` followers (they posted: the fan-out marked them)."""
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        users = graph.users
        await conn.copy_records_to_table(
            "feed_users",
            columns=["user_id", "follower_count", "last_read_at", "read_time"],
            records=[
                (user, graph.follower_count[n], now, graph.follower_count[n] > threshold)
                for n, user in enumerate(users)
            ],
        )
        await conn.copy_records_to_table(
            "feed_follows",
            columns=["follower", "followee", "created_at"],
            records=(
                (users[follower], users[followee], now)
                for follower, followees in graph.following.items()
                for followee in followees
            ),
        )
        empty = json.dumps([])
        await conn.copy_records_to_table(
            "feed_posts",
            columns=["id", "author", "text", "attachments", "created_at"],
            records=(
                (post_id, users[author], "a post of the benchmark", empty, _ms_of(post_id))
                for author, ids in graph.posts.items()
                for post_id in ids
            ),
        )
        # VACUUM too: the visibility map set, as on a table past its first autovacuum, so
        # index-only scans (followers, an author's ids) do not visit the heap.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def load_timelines(dsn: str, rows: list[tuple[str, str, str]]) -> None:
    """feed_timeline rows (owner, post id, author), skipping those already there."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE bench_timeline (owner text, post_id text, author text) "
                "ON COMMIT DROP"
            )
            await conn.copy_records_to_table("bench_timeline", records=rows)
            await conn.execute(
                "INSERT INTO feed_timeline (owner, post_id, author) "
                "SELECT owner, post_id, author FROM bench_timeline ON CONFLICT DO NOTHING"
            )
        await conn.execute("VACUUM ANALYZE feed_timeline")
    finally:
        await conn.close()
