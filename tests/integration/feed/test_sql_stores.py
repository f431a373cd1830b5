"""The feed's SQL stores on SQLite (a temporary file) and PostgreSQL (a database for this test
module): posts, likes and comments with their counts, follows with follower counts (under
concurrent follows too), the durable timelines, last reads and affinities; deleted posts never
listed; pages in id order without repeats."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from support.databases import migrated_database
from townhall.feed.adapters import tables
from townhall.feed.adapters.sql import SqlActivity, SqlFeedStore, SqlFollows, SqlPosts, SqlScores
from townhall.feed.adapters.tables import posts as posts_table
from townhall.feed.domain import Comment, Post, created_at_of
from townhall.platform.db import Database, connection
from townhall.platform.ids import new_id_str

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

# townhall.feed has no __init__.py yet (being written): find the migrations from the tables.
MIGRATIONS = Path(tables.__file__).parents[1] / "migrations"
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

posts = SqlPosts()
follows = SqlFollows()
feed = SqlFeedStore()
activity = SqlActivity()
scores = SqlScores()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def db(request, tmp_path_factory) -> AsyncIterator[Database]:
    """One database of each kind for the whole module; every test uses users of its own."""
    async with migrated_database(
        request.param, tmp_path_factory.mktemp("feed"), [MIGRATIONS]
    ) as database:
        yield database


def user() -> str:
    return str(uuid.uuid4())


def post_of(author: str, text: str = "hello", **kwargs) -> Post:
    post_id = new_id_str()
    return Post(post_id, author, text, created_at_of(post_id), **kwargs)


async def add_posts(db: Database, author: str, count: int) -> list[Post]:
    made = [post_of(author, f"post {n}") for n in range(count)]
    async with db.transaction() as tx:
        for post in made:
            await posts.add(tx, post)
    return made


# Posts -------------------------------------------------------------------------------------


async def test_a_post_reads_back_as_written_and_a_missing_one_is_none(db):
    author = user()
    post = post_of(author, "héllo, world", attachments=("a1", "a2"))
    async with db.transaction() as tx:
        await posts.add(tx, post)
    async with db.connect() as tx:
        assert await posts.get(tx, post.id) == post
        assert await posts.get(tx, new_id_str()) is None
    assert post.created_at.tzinfo is not None


async def test_a_deleted_post_is_deleted_once_and_hidden_from_every_list(db):
    author = user()
    first, second, third = await add_posts(db, author, 3)
    async with db.transaction() as tx:
        assert await posts.delete(tx, second.id, T0) is True
        assert await posts.delete(tx, second.id, T0) is False
        assert await posts.delete(tx, new_id_str(), T0) is False
    async with db.connect() as tx:
        deleted = await posts.get(tx, second.id)
        assert deleted is not None and deleted.deleted
        visible = await posts.visible(tx, [first.id, second.id, third.id, new_id_str()])
        assert set(visible) == {first.id, third.id}
        assert visible[first.id] == first
        assert [p.id for p in await posts.by_author(tx, author, None, 10)] == [third.id, first.id]
        found = await posts.ids_by_authors(tx, [author], None, 10)
        assert found == [(third.id, author), (first.id, author)]
        assert await posts.visible(tx, []) == {}


async def test_an_authors_posts_page_newest_first_without_repeats(db):
    author, other = user(), user()
    made = await add_posts(db, author, 7)
    await add_posts(db, other, 2)
    expected = sorted((p.id for p in made), reverse=True)
    seen: list[str] = []
    before = None
    async with db.connect() as tx:
        while True:
            page = await posts.by_author(tx, author, before, 3)
            seen += [p.id for p in page]
            if len(page) < 3:
                break
            before = page[-1].id
    assert seen == expected


async def test_ids_by_authors_merges_authors_newest_first_below_before(db):
    a, b, c = user(), user(), user()
    made: list[Post] = []
    for _ in range(4):  # interleaved: a, b, c, a, b, c, ...
        for author in (a, b, c):
            made += await add_posts(db, author, 1)
    of_a_and_b = sorted(((p.id, p.author) for p in made if p.author != c), reverse=True)
    async with db.connect() as tx:
        assert await posts.ids_by_authors(tx, [a, b], None, 5) == of_a_and_b[:5]
        below = of_a_and_b[4][0]
        assert await posts.ids_by_authors(tx, [b, a, a], below, 100) == of_a_and_b[5:]
        assert await posts.ids_by_authors(tx, [], None, 5) == []
        assert await posts.ids_by_authors(tx, [user()], None, 5) == []


async def test_ids_by_authors_over_two_thousand_authors_pages_through_every_post_once(db):
    authors = [user() for _ in range(2000)]
    rows = []
    for n in range(3):
        for author in authors:
            post = post_of(author, f"{n}")
            rows.append(
                {
                    "id": post.id,
                    "author": author,
                    "text": post.text,
                    "attachments": [],
                    "created_at": post.created_at,
                }
            )
    async with db.transaction() as tx:
        await connection(tx).execute(posts_table.insert(), rows)
        gone = rows[10]["id"]
        await posts.delete(tx, gone, T0)
    expected = sorted(((r["id"], r["author"]) for r in rows if r["id"] != gone), reverse=True)
    async with db.connect() as tx:
        started = time.perf_counter()
        first = await posts.ids_by_authors(tx, authors, None, 50)
        elapsed = time.perf_counter() - started
        print(
            f"\n{db.dialect}: ids_by_authors over 2,000 authors, first 50: {elapsed * 1000:.1f} ms"
        )
        assert first == expected[:50]
        started = time.perf_counter()
        rebuild = await posts.ids_by_authors(tx, authors, None, 800)
        elapsed = time.perf_counter() - started
        print(
            f"{db.dialect}: ids_by_authors over 2,000 authors, first 800: {elapsed * 1000:.1f} ms"
        )
        assert rebuild == expected[:800]
        seen: list[tuple[str, str]] = []
        before = None
        while True:
            page = await posts.ids_by_authors(tx, authors, before, 500)
            seen += page
            if len(page) < 500:
                break
            before = page[-1][0]
    assert seen == expected


async def test_likes_count_once_per_user_and_an_unlike_of_nothing_changes_nothing(db):
    (post,) = await add_posts(db, user(), 1)
    alice, bob = user(), user()
    async with db.transaction() as tx:
        assert await posts.like(tx, post.id, alice, T0) is True
        assert await posts.like(tx, post.id, alice, T0) is False
        assert await posts.like(tx, post.id, bob, T0) is True
        assert await posts.unlike(tx, post.id, user()) is False
    async with db.connect() as tx:
        liked = await posts.get(tx, post.id)
    assert liked is not None and liked.like_count == 2
    async with db.transaction() as tx:
        assert await posts.unlike(tx, post.id, alice) is True
        assert await posts.unlike(tx, post.id, alice) is False
    async with db.connect() as tx:
        unliked = await posts.get(tx, post.id)
    assert unliked is not None and unliked.like_count == 1


async def test_comments_count_on_the_post_and_page_oldest_first(db):
    (post,) = await add_posts(db, user(), 1)
    made = []
    async with db.transaction() as tx:
        for n in range(5):
            comment_id = new_id_str()
            comment = Comment(comment_id, post.id, user(), f"c{n}", created_at_of(comment_id))
            await posts.add_comment(tx, comment)
            made.append(comment)
    async with db.connect() as tx:
        counted = await posts.get(tx, post.id)
        assert counted is not None and counted.comment_count == 5
        first = await posts.comments(tx, post.id, None, 3)
        rest = await posts.comments(tx, post.id, first[-1].id, 3)
        assert await posts.comments(tx, new_id_str(), None, 3) == []
    assert first + rest == made


# Follows -----------------------------------------------------------------------------------


async def test_a_double_follow_counts_once_and_an_unfollow_of_nobody_counts_nothing(db):
    star, fan = user(), user()
    async with db.transaction() as tx:
        assert await follows.unfollow(tx, fan, star) is False
        assert await follows.follower_count(tx, star) == 0
        assert await follows.follow(tx, fan, star, T0) is True
        assert await follows.follow(tx, fan, star, T0) is False
        assert await follows.follower_count(tx, star) == 1
        assert await follows.unfollow(tx, user(), star) is False
        assert await follows.follower_count(tx, star) == 1
        assert await follows.following(tx, fan, None, 10) == [star]
        assert await follows.unfollow(tx, fan, star) is True
        assert await follows.unfollow(tx, fan, star) is False
        assert await follows.follower_count(tx, star) == 0
        assert await follows.followers(tx, star, None, 10) == []


async def test_a_rolled_back_follow_leaves_no_follow_and_no_count(db):
    star, fan = user(), user()
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await follows.follow(tx, fan, star, T0)
            raise RuntimeError("the unit of work fails")
    async with db.connect() as tx:
        assert await follows.follower_count(tx, star) == 0
        assert await follows.followers(tx, star, None, 10) == []


async def test_fifty_concurrent_follows_of_one_user_count_fifty(db):
    star = user()
    fans = [user() for _ in range(50)]
    # A pool of 50: the follows run at once (the default pool would let 20 in at a time).
    wide = Database(db.url, pool_size=50)

    async def follow(fan: str) -> bool:
        async with wide.transaction() as tx:
            return await follows.follow(tx, fan, star, T0)

    try:
        assert all(await asyncio.gather(*(follow(fan) for fan in fans)))
        # The same again, all at once: every one already follows.
        assert not any(await asyncio.gather(*(follow(fan) for fan in fans)))
    finally:
        await wide.dispose()
    async with db.connect() as tx:
        assert await follows.follower_count(tx, star) == 50
        assert await follows.followers(tx, star, None, 100) == sorted(fans)


async def test_concurrent_likes_and_comments_all_count(db):
    (post,) = await add_posts(db, user(), 1)
    wide = Database(db.url, pool_size=40)

    async def like() -> None:
        async with wide.transaction() as tx:
            assert await posts.like(tx, post.id, user(), T0)

    async def comment() -> None:
        comment_id = new_id_str()
        async with wide.transaction() as tx:
            await posts.add_comment(
                tx, Comment(comment_id, post.id, user(), "yes", created_at_of(comment_id))
            )

    try:
        await asyncio.gather(*(like() for _ in range(20)), *(comment() for _ in range(20)))
    finally:
        await wide.dispose()
    async with db.connect() as tx:
        counted = await posts.get(tx, post.id)
        assert counted is not None
        assert (counted.like_count, counted.comment_count) == (20, 20)
        assert len(await posts.comments(tx, post.id, None, 100)) == 20


async def test_followers_and_following_page_in_id_order_without_repeats(db):
    star, fan = user(), user()
    fans = [user() for _ in range(7)]
    stars = [user() for _ in range(7)]
    async with db.transaction() as tx:
        for other in fans:
            await follows.follow(tx, other, star, T0)
        for other in stars:
            await follows.follow(tx, fan, other, T0)
    async with db.connect() as tx:
        for listing, expected in ((follows.followers, fans), (follows.following, stars)):
            subject = star if listing == follows.followers else fan
            seen: list[str] = []
            after = None
            while True:
                page = await listing(tx, subject, after, 3)
                seen += page
                if len(page) < 3:
                    break
                after = page[-1]
            assert seen == sorted(expected)
        assert await follows.all_following(tx, fan) == sorted(stars)
        assert await follows.all_following(tx, user()) == []


async def test_read_time_authors_are_the_followed_ones_marked(db):
    reader, marked, plain, stranger = user(), user(), user(), user()
    async with db.transaction() as tx:
        await follows.follow(tx, reader, marked, T0)
        await follows.follow(tx, reader, plain, T0)
        assert await follows.read_time_authors(tx, reader) == []
        await follows.mark_read_time(tx, marked)
        await follows.mark_read_time(tx, marked)
        await follows.mark_read_time(tx, stranger)  # a user with no row yet
    async with db.connect() as tx:
        assert await follows.read_time_authors(tx, reader) == [marked]
        assert await follows.follower_count(tx, marked) == 1  # marking keeps the count
        assert await follows.follower_count(tx, stranger) == 0


# The durable timelines ---------------------------------------------------------------------


async def test_feed_store_add_keeps_rows_already_there_and_repeats_in_a_batch(db):
    owner, author = user(), user()
    ids = sorted(new_id_str() for _ in range(5))
    async with db.transaction() as tx:
        await feed.add(tx, [(owner, ids[0], author), (owner, ids[1], author)])
        await feed.add(tx, [])
    async with db.transaction() as tx:
        await feed.add(
            tx,
            [(owner, post_id, author) for post_id in ids] + [(owner, ids[2], author)],
        )
    async with db.connect() as tx:
        assert await feed.page(tx, owner, None, 10) == ids[::-1]
        assert await feed.page(tx, owner, ids[3], 2) == [ids[2], ids[1]]
        assert await feed.page(tx, user(), None, 10) == []


async def test_feed_store_removes_an_authors_posts_and_a_post_everywhere(db):
    owner, other_owner, author, other = user(), user(), user(), user()
    mine = sorted(new_id_str() for _ in range(3))
    theirs = new_id_str()
    async with db.transaction() as tx:
        await feed.add(tx, [(owner, p, author) for p in mine] + [(owner, theirs, other)])
        await feed.add(tx, [(other_owner, mine[0], author), (other_owner, theirs, other)])
    async with db.transaction() as tx:
        assert await feed.remove_author(tx, owner, author) == mine[::-1]
        assert await feed.remove_author(tx, owner, author) == []
        assert await feed.remove_post(tx, theirs) == sorted([owner, other_owner])
        assert await feed.remove_post(tx, theirs) == []
    async with db.connect() as tx:
        assert await feed.page(tx, owner, None, 10) == []
        assert await feed.page(tx, other_owner, None, 10) == [mine[0]]


async def test_feed_store_add_of_ten_thousand_rows_is_one_statement(db):
    author = user()
    owners = [user() for _ in range(10_000)]
    post_id = new_id_str()
    rows = [(owner, post_id, author) for owner in owners]
    async with db.transaction() as tx:
        started = time.perf_counter()
        await feed.add(tx, rows)
        elapsed = time.perf_counter() - started
    print(f"\n{db.dialect}: FeedStore.add of 10,000 rows: {elapsed * 1000:.1f} ms")
    async with db.transaction() as tx:
        await feed.add(tx, [*rows[:5000], (user(), post_id, author)])  # half of it again
        assert len(await feed.remove_post(tx, post_id)) == 10_001


# Last reads and affinities -----------------------------------------------------------------


async def test_touch_returns_the_previous_read_and_active_among_those_since(db):
    early, late, never = user(), user(), user()
    async with db.transaction() as tx:
        assert await activity.last_read(tx, early) is None
        assert await activity.touch(tx, early, T0) is None
        assert await activity.touch(tx, early, T0 + timedelta(hours=1)) == T0
        assert await activity.last_read(tx, early) == T0 + timedelta(hours=1)
        await activity.touch(tx, late, T0 + timedelta(days=2))
        await follows.follow(tx, user(), never, T0)  # a row, with no read
    async with db.connect() as tx:
        since = T0 + timedelta(days=1)
        assert await activity.active_among(tx, [early, late, never, user()], since) == {late}
        assert await activity.active_among(tx, [early, late], T0 + timedelta(hours=1)) == {
            early,
            late,
        }
        assert await activity.active_among(tx, [], T0) == set()


async def test_affinities_add_up_per_reader_and_author(db):
    reader, author, other = user(), user(), user()
    async with db.transaction() as tx:
        await scores.add_affinity(tx, reader, author, 2.0)
        await scores.add_affinity(tx, reader, author, 1.5)
        await scores.add_affinity(tx, reader, other, 3.0)
        await scores.add_affinity(tx, user(), author, 10.0)
    async with db.connect() as tx:
        assert await scores.affinities(tx, reader, [author, other, user()]) == {
            author: 3.5,
            other: 3.0,
        }
        assert await scores.affinities(tx, reader, [author]) == {author: 3.5}
        assert await scores.affinities(tx, reader, []) == {}
